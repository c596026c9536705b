"""Hypothesis strategies for registry documents, shaped like the JSON Schema.

Most values drawn are valid, some are not (out-of-range numbers, wrong credential slots,
URLs without a host...): the properties hold for whatever ``validate_integration_document``
accepts, so the validator itself decides which documents count.

Credential references are drawn from separate pools per role (``env:TOKEN_*`` for
``credentials``, ``file:/…/ca-*.pem``, ``client-*.pem`` and ``client-*.key`` for TLS), so a
test can hand every reference a value of the right shape (Envoy parses PEMs at load time).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from adapters import ADAPTERS
from control_plane.model import KINDS

__all__ = ["CA_REF", "CERT_REF", "KEY_REF", "documents", "registries"]

CA_REF = "file:/etc/integration-service/ca-"
CERT_REF = "file:/etc/integration-service/client-"
KEY_REF = "file:/etc/integration-service/key-"

ids = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?", fullmatch=True)
hosts = st.one_of(
    st.sampled_from(["api.example.com", "10.20.30.40", "127.0.0.1", "db.internal", "localhost"]),
    st.from_regex(r"[a-z]{1,8}(\.[a-z]{1,8}){0,2}", fullmatch=True),
)
ports = st.one_of(st.integers(1, 65535), st.sampled_from([0, 70000]))
schemes = st.sampled_from(["http", "https", "tcp", "tls"])
refs = st.one_of(
    st.from_regex(r"env:TOKEN_[A-Z0-9_]{1,6}", fullmatch=True),
    st.from_regex(r"file:/run/secrets/[a-z]{1,6}", fullmatch=True),
    st.sampled_from(["plain-value", "env:", "env:1BAD"]),  # not references: invalid
)
durations: st.SearchStrategy[Any] = st.one_of(
    st.builds(
        lambda n, unit: f"{n}{unit}", st.integers(0, 5000), st.sampled_from(["ms", "s", "m", "h"])
    ),
    st.floats(0.001, 86400, allow_nan=False, allow_infinity=False),
    st.integers(1, 3600),
    st.sampled_from(["1.5s", "0s", "soon", -1]),
)
u32 = st.one_of(st.integers(1, 10_000), st.sampled_from([0, 4_294_967_295, 4_294_967_296]))
retry_on = st.lists(
    st.sampled_from(
        [
            "5xx",
            "gateway-error",
            "reset",
            "connect-failure",
            "retriable-status-codes",
            "refused-stream",
            "retriable-4xx",
            "envoy-ratelimited",
        ]
    ),
    unique=True,
    max_size=4,
)


def _optional(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A dict holding any subset of ``fields``."""
    return st.fixed_dictionaries({}, optional=fields)


def _tls() -> st.SearchStrategy[dict[str, Any]]:
    n = st.integers(0, 2).map(str)
    return _optional(
        enabled=st.booleans(),
        verify=st.booleans(),
        sni=hosts,
        ca_bundle=n.map(lambda i: f"{CA_REF}{i}.pem"),
        client_cert=n.map(lambda i: f"{CERT_REF}{i}.pem"),
        client_key=n.map(lambda i: f"{KEY_REF}{i}.key"),
    )


def _url(scheme: str, host: str, port: int | None, path: str) -> str:
    return f"{scheme}://{host}{'' if port is None else f':{port}'}{path}"


upstreams = st.one_of(
    st.builds(_url, schemes, hosts, st.none() | ports, st.sampled_from(["", "/", "/v1"])),
    _optional(
        url=st.builds(_url, schemes, hosts, st.none() | ports, st.just("")),
        scheme=schemes,
        tls=_tls(),
        discovery=st.sampled_from(["dns", "static", "consul"]),
        consul_service=ids,
    ).map(lambda u: u if "url" in u else {**u, "url": "https://api.example.com"}),
    st.fixed_dictionaries(
        {"host": hosts},
        optional={
            "port": ports,
            "scheme": schemes,
            "tls": _tls(),
            "discovery": st.sampled_from(["dns", "static", "consul"]),
            "consul_service": ids,
        },
    ),
)

buckets = st.fixed_dictionaries(
    {"requests": st.integers(1, 10_000)},
    optional={"per": durations, "burst": st.integers(1, 20_000)},
)
rate_limits = st.one_of(
    st.fixed_dictionaries(
        {"requests": st.integers(0, 10_000)},
        optional={
            "per": durations,
            "burst": st.integers(1, 20_000),
            "tenant_header": st.from_regex(r"x-[a-z0-9-]{1,10}", fullmatch=True),
            "per_tenant": st.dictionaries(
                st.from_regex(r"[a-z]{1,8}", fullmatch=True), buckets, max_size=3
            ),
        },
    ),
    st.fixed_dictionaries(
        {"rule": st.sampled_from(["stripe-default", "auth0-default", "missing"])}
    ),
)
policies = _optional(
    timeout=durations,
    connect_timeout=durations,
    retries=_optional(
        max_retries=st.integers(0, 12),
        per_try_timeout=durations,
        retry_on=retry_on,
        retriable_status_codes=st.lists(st.integers(100, 599), max_size=3),
        retry_after_max=durations,
    ),
    rate_limit=rate_limits,
    circuit_breaker=_optional(
        max_connections=u32,
        max_pending_requests=u32,
        max_requests=u32,
        max_retries=st.integers(0, 100),
    ),
    outlier_detection=_optional(
        enabled=st.booleans(),
        consecutive_5xx=u32,
        consecutive_gateway_failure=u32,
        interval=durations,
        base_ejection_time=durations,
        max_ejection_time=durations,
        max_ejection_percent=st.integers(0, 101),
    ),
    cache=_optional(
        enabled=st.booleans(),
        max_entry_bytes=st.integers(1, 10_000_000),
        max_total_bytes=st.integers(1, 100_000_000),
    ),
)

text = st.text(st.characters(codec="ascii", exclude_categories=["Cc"]), max_size=12)
_SETTINGS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "auth0": _optional(
        audience=text,
        token_path=st.sampled_from(["/oauth/token", "/token", "token"]),
        scopes=st.lists(text, max_size=2),
    ),
    "email": _optional(
        transport=st.sampled_from(["smtp", "http"]),
        api_key_header=st.sampled_from(["Authorization", "X-Api-Key"]),
        api_key_prefix=st.sampled_from(["Bearer ", "", "Token "]),
        probe_path=st.sampled_from(["/", "/health"]),
    ),
    "postgresql": _optional(database=text, user=text),
    "redis": _optional(database=st.integers(-1, 16)),
    "storage": _optional(
        region=st.sampled_from(["us-east-1", "eu-central-1"]), bucket=text, service=st.just("s3")
    ),
    "stripe": _optional(api_version=st.sampled_from(["2024-06-20", "2023-10-16"])),
    "http": _optional(
        probe_path=st.sampled_from(["/", "/health", "/status?x=1"]),
        expected_status=st.integers(99, 600),
        api_key_header=st.sampled_from(["Authorization", "X-Api-Token"]),
        api_key_prefix=st.sampled_from(["Bearer ", "", "Token "]),
    ),
}


@st.composite
def documents(draw: st.DrawFn, ident: st.SearchStrategy[str] = ids) -> dict[str, Any]:
    """One integration document (a POST /integrations body or a file item)."""
    kind = draw(st.sampled_from(KINDS))
    slots = sorted(ADAPTERS[kind].credentials) or ["api_key"]
    doc: dict[str, Any] = {"id": draw(ident), "kind": kind, "upstream": draw(upstreams)}
    optional = draw(
        _optional(
            tenant=st.from_regex(r"[A-Za-z0-9._-]{1,12}", fullmatch=True),
            description=text,
            enabled=st.booleans(),
            labels=st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True), text, max_size=2),
            credentials=st.dictionaries(st.sampled_from(slots), refs, max_size=len(slots)),
            policies=policies,
            settings=_SETTINGS[kind],
        )
    )
    doc.update(optional)
    return doc


def registries(max_size: int = 4) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Several documents with distinct ids (what one registry can hold)."""
    return st.lists(documents(), min_size=1, max_size=max_size, unique_by=lambda d: d["id"])
