"""The integration registry model: frozen, typed, and free of I/O.

An :class:`Integration` is what the registry holds after validation and normalisation.
It is built from a plain document (the YAML/JSON shape users write) by
:func:`control_plane.registry.loader.integration_from_document` and turned back into one
by :func:`to_document`, so the store and the API share a single wire shape.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

__all__ = [
    "KINDS",
    "CircuitBreaker",
    "CredentialRef",
    "Integration",
    "Kind",
    "OutlierDetection",
    "Policies",
    "RateBucket",
    "RateLimit",
    "ResponseCache",
    "Retries",
    "Source",
    "TlsSettings",
    "Upstream",
    "to_document",
]

Kind = Literal["auth0", "postgresql", "redis", "stripe", "email", "storage", "http"]
KINDS: tuple[str, ...] = get_args(Kind)
Source = Literal["declared", "registered"]

ID_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
CREDENTIAL_REF_PATTERN = re.compile(r"^(env:[A-Za-z_][A-Za-z0-9_]*|file:/\S+)\Z")


@dataclass(frozen=True, slots=True)
class CredentialRef:
    """A reference to a secret, never its value: ``env:NAME`` or ``file:/path``."""

    ref: str

    @property
    def scheme(self) -> Literal["env", "file"]:
        return "env" if self.ref.startswith("env:") else "file"

    @property
    def target(self) -> str:
        return self.ref.split(":", 1)[1]

    def __str__(self) -> str:
        return self.ref


@dataclass(frozen=True, slots=True)
class TlsSettings:
    enabled: bool = True
    verify: bool = True
    sni: str | None = None
    ca_bundle: CredentialRef | None = None
    client_cert: CredentialRef | None = None
    client_key: CredentialRef | None = None


@dataclass(frozen=True, slots=True)
class Upstream:
    host: str
    port: int
    scheme: Literal["http", "https", "tcp", "tls"]
    tls: TlsSettings
    discovery: Literal["dns", "static", "consul"] = "dns"
    consul_service: str | None = None
    url: str | None = None
    # Who resolves a host name: the control plane, checking every address against the SSRF
    # rules and serving the accepted ones over EDS (vetted), or Envoy itself (envoy). The
    # loader fills in the default by source: vetted when registered, envoy when declared.
    resolution: Literal["vetted", "envoy"] = "envoy"

    @property
    def authority(self) -> str:
        default = {"http": 80, "https": 443}.get(self.scheme)
        return self.host if self.port == default else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class RateBucket:
    """Envoy token bucket: ``requests`` tokens added every ``per`` seconds, at most ``burst``."""

    requests: int
    per: float
    burst: int


@dataclass(frozen=True, slots=True)
class RateLimit:
    bucket: RateBucket
    rule: str | None = None
    tenant_header: str = "x-tenant-id"
    per_tenant: Mapping[str, RateBucket] = field(default_factory=dict)
    # docs/rate-limits.md: where the quota holds, and what a global one does when the
    # rate-limit service cannot answer.
    scope: Literal["pod", "fleet", "global"] = "pod"
    failure_mode: Literal["open", "closed"] = "open"
    response_headers: bool = False


@dataclass(frozen=True, slots=True)
class Retries:
    max_retries: int = 2
    per_try_timeout: float | None = None
    retry_on: tuple[str, ...] = ("connect-failure", "reset", "retriable-status-codes")
    retriable_status_codes: tuple[int, ...] = (502, 503, 504)
    retry_after_max: float = 10.0


@dataclass(frozen=True, slots=True)
class CircuitBreaker:
    max_connections: int = 1024
    max_pending_requests: int = 1024
    max_requests: int = 1024
    max_retries: int = 3


@dataclass(frozen=True, slots=True)
class OutlierDetection:
    enabled: bool = True
    consecutive_5xx: int = 5
    consecutive_gateway_failure: int = 5
    interval: float = 10.0
    base_ejection_time: float = 30.0
    max_ejection_time: float = 300.0
    # 100 %, not Envoy's 10 % default: with 10 % the only host of a cluster is never ejected.
    max_ejection_percent: int = 100


@dataclass(frozen=True, slots=True)
class ResponseCache:
    enabled: bool = False
    max_entry_bytes: int = 1_048_576
    max_total_bytes: int = 67_108_864


@dataclass(frozen=True, slots=True)
class Policies:
    timeout: float = 15.0
    connect_timeout: float = 5.0
    retries: Retries = field(default_factory=Retries)
    rate_limit: RateLimit | None = None
    circuit_breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    outlier_detection: OutlierDetection = field(default_factory=OutlierDetection)
    cache: ResponseCache = field(default_factory=ResponseCache)
    # TCP kinds: seconds a connection may idle before Envoy closes it (0: never); None: the
    # kind's default (AdapterSpec.tcp_idle_timeout).
    idle_timeout: float | None = None


@dataclass(frozen=True, slots=True)
class Integration:
    id: str
    kind: Kind
    upstream: Upstream
    tenant: str = "default"
    description: str = ""
    enabled: bool = True
    labels: Mapping[str, str] = field(default_factory=dict)
    listen_port: int | None = None
    credentials: Mapping[str, CredentialRef] = field(default_factory=dict)
    policies: Policies = field(default_factory=Policies)
    settings: Mapping[str, Any] = field(default_factory=dict)
    # Shared topology: the workloads of its tenant that may run it (empty: all of them).
    workloads: tuple[str, ...] = ()
    version: int = 0
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    source: Source = "registered"

    def replace(self, **changes: Any) -> Integration:
        return dataclasses.replace(self, **changes)

    def credential_refs(self) -> list[CredentialRef]:
        """Every secret reference the integration names: credentials and TLS material."""
        tls = self.upstream.tls
        refs = [*self.credentials.values(), tls.ca_bundle, tls.client_cert, tls.client_key]
        return [r for r in refs if r is not None]


def _duration(seconds: float) -> str:
    if seconds < 1 and seconds * 1000 == int(seconds * 1000):
        return f"{int(seconds * 1000)}ms"
    # Fixed point, never an exponent ("1e-05s", "1e+06s" fail DURATION_PATTERN when the
    # document is read back); milliseconds are the finest grain Envoy is given anyway.
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"


def _bucket_doc(bucket: RateBucket) -> dict[str, Any]:
    return {"requests": bucket.requests, "per": _duration(bucket.per), "burst": bucket.burst}


def _ref(ref: CredentialRef | None) -> str | None:
    return None if ref is None else ref.ref


def to_document(item: Integration, *, with_meta: bool = True) -> dict[str, Any]:
    """The integration as the plain document users write (credentials stay references)."""
    up = item.upstream
    upstream: dict[str, Any] = {"host": up.host, "port": up.port, "scheme": up.scheme}
    if up.url:
        upstream["url"] = up.url
    upstream["discovery"] = up.discovery
    if up.consul_service:
        upstream["consul_service"] = up.consul_service
    if up.resolution != ("vetted" if item.source == "registered" else "envoy"):
        upstream["resolution"] = up.resolution  # written only where not its source's default
    tls = {
        "enabled": up.tls.enabled,
        "verify": up.tls.verify,
        "sni": up.tls.sni,
        "ca_bundle": _ref(up.tls.ca_bundle),
        "client_cert": _ref(up.tls.client_cert),
        "client_key": _ref(up.tls.client_key),
    }
    upstream["tls"] = {k: v for k, v in tls.items() if v is not None}
    pol = item.policies
    policies: dict[str, Any] = {
        "timeout": _duration(pol.timeout),
        "connect_timeout": _duration(pol.connect_timeout),
        "retries": {
            "max_retries": pol.retries.max_retries,
            "retry_on": list(pol.retries.retry_on),
            "retriable_status_codes": list(pol.retries.retriable_status_codes),
            "retry_after_max": _duration(pol.retries.retry_after_max),
        },
        "circuit_breaker": dataclasses.asdict(pol.circuit_breaker),
        "outlier_detection": {
            "enabled": pol.outlier_detection.enabled,
            "consecutive_5xx": pol.outlier_detection.consecutive_5xx,
            "consecutive_gateway_failure": pol.outlier_detection.consecutive_gateway_failure,
            "interval": _duration(pol.outlier_detection.interval),
            "base_ejection_time": _duration(pol.outlier_detection.base_ejection_time),
            "max_ejection_time": _duration(pol.outlier_detection.max_ejection_time),
            "max_ejection_percent": pol.outlier_detection.max_ejection_percent,
        },
        "cache": dataclasses.asdict(pol.cache),
    }
    if pol.retries.per_try_timeout is not None:
        policies["retries"]["per_try_timeout"] = _duration(pol.retries.per_try_timeout)
    if pol.idle_timeout is not None:
        policies["idle_timeout"] = "never" if pol.idle_timeout == 0 else _duration(pol.idle_timeout)
    if pol.rate_limit is not None:
        rl = pol.rate_limit
        rate: dict[str, Any] = _bucket_doc(rl.bucket)
        if rl.rule:
            rate["rule"] = rl.rule
        if rl.per_tenant:
            rate["tenant_header"] = rl.tenant_header
            rate["per_tenant"] = {t: _bucket_doc(b) for t, b in sorted(rl.per_tenant.items())}
        if rl.scope != "pod":
            rate["scope"] = rl.scope
        if rl.failure_mode != "open":
            rate["failure_mode"] = rl.failure_mode
        if rl.response_headers:
            rate["response_headers"] = True
        policies["rate_limit"] = rate
    doc: dict[str, Any] = {
        "id": item.id,
        "kind": item.kind,
        "tenant": item.tenant,
        "description": item.description,
        "enabled": item.enabled,
        "labels": dict(item.labels),
        "upstream": upstream,
        "credentials": {k: v.ref for k, v in sorted(item.credentials.items())},
        "policies": policies,
        "settings": dict(item.settings),
    }
    if item.listen_port is not None:
        doc["listen_port"] = item.listen_port
    if item.workloads:
        doc["workloads"] = list(item.workloads)
    if with_meta:
        doc["version"] = item.version
        doc["source"] = item.source
        doc["created_at"] = item.created_at.isoformat() if item.created_at else None
        doc["updated_at"] = item.updated_at.isoformat() if item.updated_at else None
    return doc
