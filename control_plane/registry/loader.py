"""Read, validate and normalise integration documents and files.

``load_integrations_file`` returns the declared integrations or raises
:class:`RegistryError` with *every* problem found (schema, duplicates, unknown rate-limit
rules), each located by file, line, column and JSON pointer.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from adapters import ADAPTERS
from control_plane.model import (
    CircuitBreaker,
    CredentialRef,
    Integration,
    OutlierDetection,
    Policies,
    ResponseCache,
    Retries,
    Source,
    TlsSettings,
    Upstream,
)
from control_plane.problems import Problem, RegistryError
from control_plane.registry.credential_policy import CredentialPolicy
from control_plane.registry.durations import duration_problems, parse_duration
from control_plane.registry.rate_rules import (
    RateRules,
    global_unit_problems,
    load_rate_limits,
    resolve_rate_limit,
)
from control_plane.registry.schema import file_schema, integration_schema
from control_plane.registry.token_mode import grant_problems
from control_plane.registry.validation import schema_problems
from control_plane.registry.yamlmarks import MarkedDocument, load_marked

# ``RateRules``, ``load_rate_limits`` (rate_rules) and ``parse_duration`` (durations) are
# re-exported: callers load the rules and the integrations from one place.
__all__ = [
    "RateRules",
    "integration_from_document",
    "load_integrations_file",
    "load_rate_limits",
    "parse_duration",
    "parse_integrations_text",
    "validate_integration_document",
]


def _ref(value: str | None) -> CredentialRef | None:
    return CredentialRef(value) if value else None


def _upstream(
    raw: str | Mapping[str, Any], kind: str, settings: Mapping[str, Any], source: Source
) -> Upstream:
    spec = ADAPTERS[kind]
    http_transport = spec.protocol_for(settings) == "http"
    default_scheme = spec.default_scheme
    if kind == "email" and http_transport:
        default_scheme = "https"
    body: dict[str, Any] = {"url": raw} if isinstance(raw, str) else dict(raw)
    scheme = body.get("scheme", default_scheme)
    host = body.get("host")
    port = body.get("port")
    url = body.get("url")
    if url:
        parts = urlsplit(url)
        scheme = body.get("scheme", parts.scheme)
        host = host or parts.hostname
        port = port or parts.port
    default_port = {"http": 80, "https": 443}.get(scheme, spec.default_port)
    tls_raw = body.get("tls", {})
    return Upstream(
        host=str(host),
        port=int(port or default_port),
        scheme=scheme,
        tls=TlsSettings(
            enabled=bool(tls_raw.get("enabled", scheme in ("https", "tls"))),
            verify=bool(tls_raw.get("verify", True)),
            sni=tls_raw.get("sni"),
            ca_bundle=_ref(tls_raw.get("ca_bundle")),
            client_cert=_ref(tls_raw.get("client_cert")),
            client_key=_ref(tls_raw.get("client_key")),
        ),
        discovery=body.get("discovery", "dns"),
        consul_service=body.get("consul_service"),
        url=url,
        resolution=body.get("resolution") or ("vetted" if source == "registered" else "envoy"),
    )


def _policies(raw: Mapping[str, Any], rules: RateRules) -> Policies:
    retries = raw.get("retries", {})
    od = raw.get("outlier_detection", {})
    defaults_p, defaults_r, defaults_od = Policies(), Retries(), OutlierDetection()

    def dur(block: Mapping[str, Any], key: str, default: float) -> float:
        return parse_duration(block[key]) if key in block else default

    return Policies(
        timeout=dur(raw, "timeout", defaults_p.timeout),
        connect_timeout=dur(raw, "connect_timeout", defaults_p.connect_timeout),
        idle_timeout=None
        if "idle_timeout" not in raw
        else 0.0
        if raw["idle_timeout"] == "never"
        else parse_duration(raw["idle_timeout"]),
        retries=Retries(
            max_retries=retries.get("max_retries", defaults_r.max_retries),
            per_try_timeout=dur(retries, "per_try_timeout", 0.0) or None,
            retry_on=tuple(retries.get("retry_on", defaults_r.retry_on)),
            retriable_status_codes=tuple(
                retries.get("retriable_status_codes", defaults_r.retriable_status_codes)
            ),
            retry_after_max=dur(retries, "retry_after_max", defaults_r.retry_after_max),
        ),
        rate_limit=resolve_rate_limit(raw["rate_limit"], rules) if "rate_limit" in raw else None,
        circuit_breaker=CircuitBreaker(**raw.get("circuit_breaker", {})),
        outlier_detection=OutlierDetection(
            enabled=od.get("enabled", defaults_od.enabled),
            consecutive_5xx=od.get("consecutive_5xx", defaults_od.consecutive_5xx),
            consecutive_gateway_failure=od.get(
                "consecutive_gateway_failure", defaults_od.consecutive_gateway_failure
            ),
            interval=dur(od, "interval", defaults_od.interval),
            base_ejection_time=dur(od, "base_ejection_time", defaults_od.base_ejection_time),
            max_ejection_time=dur(od, "max_ejection_time", defaults_od.max_ejection_time),
            max_ejection_percent=od.get("max_ejection_percent", defaults_od.max_ejection_percent),
        ),
        cache=ResponseCache(**raw.get("cache", {})),
    )


def _timestamp(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, str) and value:
        return dt.datetime.fromisoformat(value)
    return None


def _integral(value: Any) -> Any:
    """JSON Schema's ``integer`` accepts ``125.0``; the model (and protobuf) want ``125``."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def integration_from_document(
    doc: Mapping[str, Any],
    *,
    source: Source,
    rules: RateRules | None = None,
    shared: dict[str, Policies] | None = None,
) -> Integration:
    """Build the model from a document that already passed validation. ``shared``: the
    policies built so far from the same file, by the text of their block (they are frozen:
    items with the same block share one)."""
    doc = _integral(doc)
    kind = doc["kind"]
    raw_policies = doc.get("policies", {})
    if shared is None:
        policies = _policies(raw_policies, rules or {})
    else:
        key = repr(raw_policies)
        policies = shared.get(key) or shared.setdefault(key, _policies(raw_policies, rules or {}))
    settings = {**ADAPTERS[kind].default_settings, **doc.get("settings", {})}
    return Integration(
        id=doc["id"],
        kind=kind,
        tenant=doc.get("tenant", "default"),
        description=doc.get("description", ""),
        enabled=doc.get("enabled", True),
        labels=dict(doc.get("labels", {})),
        upstream=_upstream(doc["upstream"], kind, settings, source),
        listen_port=doc.get("listen_port"),
        credentials={k: CredentialRef(v) for k, v in doc.get("credentials", {}).items()},
        policies=policies,
        settings=settings,
        workloads=tuple(sorted(set(doc.get("workloads", ())))),
        version=int(doc.get("version", 0)),
        created_at=_timestamp(doc.get("created_at")),
        updated_at=_timestamp(doc.get("updated_at")),
        source=source,
    )


def _url_problem(url: str, upstream: Any) -> str | None:
    """Why an upstream URL cannot be used (the schema only checks its scheme)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError as exc:
        return f"invalid upstream URL {url!r}: {exc}"
    if not parts.hostname and not (isinstance(upstream, dict) and upstream.get("host")):
        return f"upstream URL {url!r} names no host"
    return None


def _ejection_problems(
    doc: MarkedDocument, policies: Any, path: tuple[str | int, ...]
) -> list[Problem]:
    """Envoy refuses a cluster whose max_ejection_time is below its base_ejection_time."""
    od = policies.get("outlier_detection") if isinstance(policies, dict) else None
    if not isinstance(od, dict):
        return []
    defaults = OutlierDetection()
    try:
        base = parse_duration(od.get("base_ejection_time", defaults.base_ejection_time))
        most = parse_duration(od.get("max_ejection_time", defaults.max_ejection_time))
    except (TypeError, ValueError):
        return []  # the schema reports malformed durations
    if most >= base:
        return []
    return [
        doc.problem(
            (*path, "outlier_detection", "max_ejection_time"),
            f"max_ejection_time ({most:g}s) is shorter than base_ejection_time ({base:g}s)",
            "make max_ejection_time at least base_ejection_time (defaults: 30s and 300s)",
        )
    ]


def _idle_timeout_problems(
    doc: MarkedDocument, item: Mapping[str, Any], base: tuple[str | int, ...]
) -> list[Problem]:
    """``idle_timeout`` is a TCP-listener policy: refused where the kind is served as HTTP
    (Envoy's HTTP connection manager manages its idle connections itself)."""
    policies, kind = item.get("policies"), item.get("kind")
    if not isinstance(policies, dict) or "idle_timeout" not in policies:
        return []
    if not isinstance(kind, str) or kind not in ADAPTERS:
        return []
    settings = item.get("settings") if isinstance(item.get("settings"), dict) else {}
    if ADAPTERS[kind].protocol_for(settings or {}) == "tcp":
        return []
    return [
        doc.problem(
            (*base, "policies", "idle_timeout"),
            f"idle_timeout applies to TCP kinds; {kind!r} is served over HTTP here",
            "remove it (TCP kinds: postgresql, redis, email with transport: smtp)",
        )
    ]


def _semantic_problems(doc: MarkedDocument, items: list[Any], rules: RateRules) -> list[Problem]:
    """Cross-item checks the schema cannot express: unique ids and ports, known rules."""
    problems: list[Problem] = []
    ids: dict[str, int] = {}
    ports: dict[int, str] = {}
    clean_policies: set[str] = set()
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        base = ("integrations", index)
        # Both checks read the policies block alone: a block already found clean (the same
        # policies on many items) is not checked again.
        policies = item.get("policies")
        seen_as = repr(policies)
        if seen_as not in clean_policies:
            found = duration_problems(doc, policies, (*base, "policies"))
            found.extend(_ejection_problems(doc, policies, (*base, "policies")))
            if not found:
                clean_policies.add(seen_as)
            problems.extend(found)
        problems.extend(_idle_timeout_problems(doc, item, base))
        for path, message, fix in grant_problems(item):
            problems.append(doc.problem((*base, *path), message, fix))
        ident = item.get("id")
        if isinstance(ident, str):
            if ident in ids:
                problems.append(
                    doc.problem(
                        (*base, "id"),
                        f"duplicate id {ident!r} (first used by item {ids[ident]})",
                        "give every integration a unique id",
                    )
                )
            ids.setdefault(ident, index)
        port = item.get("listen_port")
        if isinstance(port, int):
            if port in ports:
                problems.append(
                    doc.problem(
                        (*base, "listen_port"),
                        f"listen_port {port} is already used by {ports[port]!r}",
                        "choose another port or omit listen_port to have one assigned",
                    )
                )
            ports.setdefault(port, str(ident))
        upstream = item.get("upstream")
        url = upstream if isinstance(upstream, str) else None
        if isinstance(upstream, dict) and isinstance(upstream.get("url"), str):
            url = upstream["url"]
        if url is not None and (why := _url_problem(url, upstream)) is not None:
            where = (*base, "upstream") if isinstance(upstream, str) else (*base, "upstream", "url")
            problems.append(
                doc.problem(where, why, "write scheme://host[:port], e.g. https://api.example.com")
            )
        rule = (
            item.get("policies", {}).get("rate_limit", {})
            if isinstance(item.get("policies"), dict)
            else {}
        )
        if (
            isinstance(rule, dict)
            and isinstance(rule.get("rule"), str)
            and rule["rule"] not in rules
        ):
            known = ", ".join(sorted(rules)) or "none defined"
            problems.append(
                doc.problem(
                    (*base, "policies", "rate_limit", "rule"),
                    f"unknown rate-limit rule {rule['rule']!r}",
                    f"define it in config/rate_limits.yaml or use one of: {known}",
                )
            )
        elif isinstance(rule, dict) and rule:
            problems.extend(global_unit_problems(doc, rule, rules, (*base, "policies")))
    return problems


def parse_integrations_text(
    text: str, file: str, rules: RateRules | None = None, policy: CredentialPolicy | None = None
) -> list[Integration]:
    """Validate a whole integrations file; raise with every problem, or return the items.
    ``policy``: the credential policy (reserved references, file roots, the bindings of
    existing grants), whose refusals are problems at the line of the reference."""
    rules = rules or {}
    doc = load_marked(text, file)
    problems = list(doc.problems)
    if doc.data is None and not problems:
        doc.data = {"integrations": []}
    if not problems:
        problems.extend(schema_problems(doc, file_schema()))
        items = doc.data.get("integrations") if isinstance(doc.data, dict) else None
        if isinstance(items, list):
            problems.extend(_semantic_problems(doc, items, rules))
    shared: dict[str, Policies] = {}
    items = (
        []
        if problems
        else [
            integration_from_document(item, source="declared", rules=rules, shared=shared)
            for item in doc.data["integrations"]
        ]
    )
    for index, item in enumerate(items if policy is not None else []):
        assert policy is not None
        for refused in policy.problems(item):
            path: tuple[str | int, ...] = (
                "integrations",
                index,
                *refused.pointer.strip("/").split("/"),
            )
            located = doc.problem(path, refused.message, refused.fix)
            problems.append(dataclasses.replace(located, rule=refused.rule))
    if problems:
        problems.sort(key=lambda p: (p.line or 0, p.column or 0))
        raise RegistryError(problems, f"{file} is invalid")
    return items


def load_integrations_file(
    path: Path, rules: RateRules | None = None, policy: CredentialPolicy | None = None
) -> list[Integration]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError(
            [Problem("", f"cannot read file: {exc.strerror}", "check the path", file=str(path))],
            f"{path} is unreadable",
        ) from exc
    return parse_integrations_text(text, str(path), rules, policy)


def _resolution_problems(data: Any) -> list[Problem]:
    """An API registration's names are resolved by the control plane (docs/security.md,
    "Vetted resolution"): Envoy resolving them would reopen DNS rebinding."""
    upstream = data.get("upstream") if isinstance(data, dict) else None
    if not isinstance(upstream, dict) or upstream.get("resolution") != "envoy":
        return []
    return [
        Problem(
            "/upstream/resolution",
            "resolution 'envoy' is for integrations declared in the integrations file",
            "remove it (API registrations are always vetted), or declare the integration",
        )
    ]


def validate_integration_document(data: Any, rules: RateRules | None = None) -> list[Problem]:
    """Problems of one API document (pointers relative to the body); empty when valid."""
    doc = MarkedDocument(data=data, file="<request body>")
    problems = schema_problems(doc, integration_schema())
    problems.extend(_resolution_problems(data))
    if not problems and isinstance(data, dict):
        wrapped = MarkedDocument(data={"integrations": [data]}, file="<request body>")
        for problem in _semantic_problems(wrapped, [data], rules or {}):
            pointer = problem.pointer.removeprefix("/integrations/0")
            problems.append(Problem(pointer, problem.message, problem.fix))
    return [Problem(p.pointer, p.message, p.fix) for p in problems]
