"""Service settings: ``config/integration_service.yaml`` overlaid by environment variables.

Parsed from an injected environment mapping (never read at import time), so tests build
settings from a dict. Environment variables win over the file; the names are the seed's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from control_plane.bounded_yaml import YamlLimitError, load_bounded
from control_plane.problems import Problem, RegistryError

__all__ = ["Settings", "load_settings"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "0.0.0.0"
    port: int = 8002
    debug: bool = False
    data_dir: Path = Path(".integration-service")
    integrations_file: Path = Path("config/integrations.yaml")
    rate_limits_file: Path = Path("config/rate_limits.yaml")
    listen_port_range: tuple[int, int] = (10000, 10999)
    log_level: str = "INFO"
    log_format: str = "json"
    postgresql_url: str | None = None
    redis_url: str | None = None
    consul_host: str | None = None
    consul_port: int = 8500
    # Vetted resolution (docs/security.md): the control plane resolves upstream names, every
    # answer kept for its TTL within [floor, ceiling] seconds, asking ``dns_servers``
    # (comma-separated addresses, each with an optional :port; empty: /etc/resolv.conf's).
    dns_ttl_floor: float = 5.0
    dns_ttl_ceiling: float = 300.0
    dns_servers: str = ""
    xds_host: str = "127.0.0.1"
    xds_port: int = 18000
    envoy_admin_port: int = 9901
    envoy_node_id: str = "integration-sidecar"
    xds_delta: bool = True
    envoy_concurrency: int = 1
    # Topology (docs/deployment.md, "Choosing a topology"): "pod" runs one control plane
    # beside each Envoy; "shared" serves the Envoys of many application pods over xDS with
    # TLS and client certificates (the files below), each node the workload its
    # certificate names in the workloads file.
    topology: str = "pod"
    xds_tls_cert: Path | None = None
    xds_tls_key: Path | None = None
    xds_client_ca: Path | None = None
    workloads_file: Path = Path("config/workloads.yaml")
    # Shared topology: the response-cache directory in the application pods' Envoys, and
    # how long a disconnected node's status is kept (seconds).
    envoy_cache_dir: str = "/var/cache/integration-service"
    # ``scope: fleet`` rate limits (docs/rate-limits.md): the fleet this replica belongs to
    # (replicas sharing one Redis and this name share each bucket), and its heartbeat.
    fleet_name: str = "integration-service"
    fleet_heartbeat_interval: float = 2.0
    fleet_heartbeat_ttl: float = 6.0
    # Shared topology: the loopback xDS port of the control plane's own probe Envoy.
    probe_xds_port: int = 18001
    node_status_retention: float = 600.0
    # Shared topology: connections the TLS gate holds at most (more are refused, counted).
    xds_max_connections: int = 20_000
    # Each integration's access log (<data_dir>/access-logs/<id>.log) is rotated past this
    # many bytes, checked every access_log_check_interval seconds; 0: never rotated.
    access_log_max_bytes: int = 10 * 1024 * 1024
    access_log_check_interval: float = 5.0
    # Seed variables kept for adapters and tests; values are never logged.
    auth0_domain: str | None = None
    auth0_client_id: str | None = None
    auth0_audience: str | None = None
    # Management-API security (docs/security.md). ``auth`` is "enabled" unless explicitly
    # "disabled"; ``admin_key`` is a secret *reference* (env:NAME / file:/path).
    auth: str = "enabled"
    admin_key: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_jwks_url: str | None = None
    jwt_algorithms: str = "RS256,ES256"
    jwt_roles_claim: str = "https://integration-service/roles"
    jwt_tenant_claim: str = "https://integration-service/tenant"
    jwt_leeway: int = 10
    jwt_jwks_min_refetch: int = 30
    api_rate_limit: int = 20
    api_rate_burst: int = 100
    metrics_auth: bool = False
    upstream_allowlist: str = ""
    # Credential governance (docs/security.md): the operator's secret grants, and the
    # directories ``file:`` references may name (comma-separated; a Secret mount).
    grants_file: Path = Path("config/grants.yaml")
    file_roots: str = "/var/run/secrets/integrations"
    # Periodic probes through the sidecar (control_plane.probing.runner.ProbeSchedule).
    probe_enabled: bool = True
    probe_interval: float = 30.0
    probe_timeout: float = 10.0
    probe_healthy_threshold: int = 1
    probe_unhealthy_threshold: int = 2
    # Replicas: a full re-read of the shared store at least this often (seconds), beside the
    # PostgreSQL notifications and Redis events that trigger one at once.
    registry_resync_interval: float = 30.0
    # Token broker (docs/external-services.md, "Token mode"): refresh at a fraction of the
    # lifetime minus up to ``jitter`` of it; withdraw a token min(margin s, 5 % of its
    # lifetime) before expiry; back off from base to max seconds; a storm of this many
    # upstream 401s within one check interval triggers one early refresh. With Redis,
    # replicas share tokens only with an encryption key (a secret reference).
    token_encryption_key: str | None = None
    token_refresh_fraction: float = 0.9
    token_refresh_jitter: float = 0.04
    token_expiry_margin: float = 30.0
    token_backoff_base: float = 1.0
    token_backoff_max: float = 30.0
    token_request_timeout: float = 10.0
    token_401_threshold: int = 20
    token_401_interval: float = 5.0
    # ``scope: global`` quotas (docs/rate-limits.md#global): envoyproxy/ratelimit's gRPC
    # host:port for the Envoys, and the runtime directory its config is rendered into
    # (its RUNTIME_ROOT/RUNTIME_SUBDIRECTORY/config; unset: this replica renders nothing).
    ratelimit_address: str | None = None
    ratelimit_config_dir: Path | None = None
    # The Redis envoyproxy/ratelimit counts in (default: redis_url) and its CACHE_KEY_PREFIX:
    # where GET /integrations/{id}/rate-limit reads a global quota's usage.
    ratelimit_redis_url: str | None = None
    ratelimit_key_prefix: str = ""

    def file_root_paths(self) -> tuple[Path, ...]:
        return tuple(Path(p.strip()) for p in self.file_roots.split(",") if p.strip())

    def reserved_ports(self) -> dict[int, str]:
        """Ports this service itself listens on (0, an ephemeral port, reserves nothing):
        an integration's listener there would never bind."""
        named = {
            self.port: "the management API (port)",
            self.xds_port: "the xDS server (xds_port)",
            self.envoy_admin_port: "Envoy's admin API (envoy_admin_port)",
        }
        if self.topology == "shared":
            named[self.probe_xds_port] = "the probe Envoy's xDS server (probe_xds_port)"
        return {port: what for port, what in named.items() if port}

    def describe(self) -> dict[str, Any]:
        """Settings safe to log or show: URLs lose their passwords."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("postgresql_url", "redis_url", "ratelimit_redis_url") and value:
                value = redact_url(value)
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out


def redact_url(url: str) -> str:
    """``scheme://user:***@host/db`` — never print a DSN password."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else f"{scheme}://{user}@{host}"


# setting name -> environment variable
ENV_NAMES: Mapping[str, str] = {
    "host": "INTEGRATION_SERVICE_HOST",
    "port": "INTEGRATION_SERVICE_PORT",
    "debug": "INTEGRATION_SERVICE_DEBUG",
    "data_dir": "INTEGRATION_SERVICE_DATA_DIR",
    "integrations_file": "INTEGRATION_SERVICE_INTEGRATIONS_FILE",
    "rate_limits_file": "INTEGRATION_SERVICE_RATE_LIMITS_FILE",
    "listen_port_range": "INTEGRATION_SERVICE_LISTEN_PORT_RANGE",
    "log_level": "LOG_LEVEL",
    "log_format": "LOG_FORMAT",
    "postgresql_url": "POSTGRESQL_URL",
    "redis_url": "REDIS_URL",
    "consul_host": "CONSUL_HOST",
    "consul_port": "CONSUL_PORT",
    "dns_ttl_floor": "INTEGRATION_SERVICE_DNS_TTL_FLOOR",
    "dns_ttl_ceiling": "INTEGRATION_SERVICE_DNS_TTL_CEILING",
    "dns_servers": "INTEGRATION_SERVICE_DNS_SERVERS",
    "xds_host": "INTEGRATION_SERVICE_XDS_HOST",
    "xds_port": "INTEGRATION_SERVICE_XDS_PORT",
    "envoy_admin_port": "INTEGRATION_SERVICE_ENVOY_ADMIN_PORT",
    "envoy_node_id": "INTEGRATION_SERVICE_NODE_ID",
    "xds_delta": "INTEGRATION_SERVICE_XDS_DELTA",
    "envoy_concurrency": "INTEGRATION_SERVICE_ENVOY_CONCURRENCY",
    "topology": "INTEGRATION_SERVICE_TOPOLOGY",
    "xds_tls_cert": "INTEGRATION_SERVICE_XDS_TLS_CERT",
    "xds_tls_key": "INTEGRATION_SERVICE_XDS_TLS_KEY",
    "xds_client_ca": "INTEGRATION_SERVICE_XDS_CLIENT_CA",
    "workloads_file": "INTEGRATION_SERVICE_WORKLOADS_FILE",
    "envoy_cache_dir": "INTEGRATION_SERVICE_ENVOY_CACHE_DIR",
    "probe_xds_port": "INTEGRATION_SERVICE_PROBE_XDS_PORT",
    "fleet_name": "INTEGRATION_SERVICE_FLEET_NAME",
    "fleet_heartbeat_interval": "INTEGRATION_SERVICE_FLEET_HEARTBEAT_INTERVAL",
    "fleet_heartbeat_ttl": "INTEGRATION_SERVICE_FLEET_HEARTBEAT_TTL",
    "node_status_retention": "INTEGRATION_SERVICE_NODE_STATUS_RETENTION",
    "xds_max_connections": "INTEGRATION_SERVICE_XDS_MAX_CONNECTIONS",
    "access_log_max_bytes": "INTEGRATION_SERVICE_ACCESS_LOG_MAX_BYTES",
    "access_log_check_interval": "INTEGRATION_SERVICE_ACCESS_LOG_CHECK_INTERVAL",
    "auth0_domain": "AUTH0_DOMAIN",
    "auth0_client_id": "AUTH0_CLIENT_ID",
    "auth0_audience": "AUTH0_AUDIENCE",
    "auth": "INTEGRATION_SERVICE_AUTH",
    "admin_key": "INTEGRATION_SERVICE_ADMIN_KEY",
    "jwt_issuer": "INTEGRATION_SERVICE_JWT_ISSUER",
    "jwt_audience": "INTEGRATION_SERVICE_JWT_AUDIENCE",
    "jwt_jwks_url": "INTEGRATION_SERVICE_JWT_JWKS_URL",
    "jwt_algorithms": "INTEGRATION_SERVICE_JWT_ALGORITHMS",
    "jwt_roles_claim": "INTEGRATION_SERVICE_JWT_ROLES_CLAIM",
    "jwt_tenant_claim": "INTEGRATION_SERVICE_JWT_TENANT_CLAIM",
    "jwt_leeway": "INTEGRATION_SERVICE_JWT_LEEWAY",
    "jwt_jwks_min_refetch": "INTEGRATION_SERVICE_JWT_JWKS_MIN_REFETCH",
    "api_rate_limit": "INTEGRATION_SERVICE_API_RATE_LIMIT",
    "api_rate_burst": "INTEGRATION_SERVICE_API_RATE_BURST",
    "metrics_auth": "INTEGRATION_SERVICE_METRICS_AUTH",
    "upstream_allowlist": "INTEGRATION_SERVICE_UPSTREAM_ALLOWLIST",
    "grants_file": "INTEGRATION_SERVICE_GRANTS_FILE",
    "file_roots": "INTEGRATION_SERVICE_FILE_ROOTS",
    "probe_enabled": "INTEGRATION_SERVICE_PROBE_ENABLED",
    "probe_interval": "INTEGRATION_SERVICE_PROBE_INTERVAL",
    "probe_timeout": "INTEGRATION_SERVICE_PROBE_TIMEOUT",
    "probe_healthy_threshold": "INTEGRATION_SERVICE_PROBE_HEALTHY_THRESHOLD",
    "probe_unhealthy_threshold": "INTEGRATION_SERVICE_PROBE_UNHEALTHY_THRESHOLD",
    "registry_resync_interval": "INTEGRATION_SERVICE_REGISTRY_RESYNC_INTERVAL",
    "token_encryption_key": "INTEGRATION_SERVICE_TOKEN_ENCRYPTION_KEY",
    "token_refresh_fraction": "INTEGRATION_SERVICE_TOKEN_REFRESH_FRACTION",
    "token_refresh_jitter": "INTEGRATION_SERVICE_TOKEN_REFRESH_JITTER",
    "token_expiry_margin": "INTEGRATION_SERVICE_TOKEN_EXPIRY_MARGIN",
    "token_backoff_base": "INTEGRATION_SERVICE_TOKEN_BACKOFF_BASE",
    "token_backoff_max": "INTEGRATION_SERVICE_TOKEN_BACKOFF_MAX",
    "token_request_timeout": "INTEGRATION_SERVICE_TOKEN_REQUEST_TIMEOUT",
    "token_401_threshold": "INTEGRATION_SERVICE_TOKEN_401_THRESHOLD",
    "token_401_interval": "INTEGRATION_SERVICE_TOKEN_401_INTERVAL",
    "ratelimit_address": "INTEGRATION_SERVICE_RATELIMIT_ADDRESS",
    "ratelimit_config_dir": "INTEGRATION_SERVICE_RATELIMIT_CONFIG_DIR",
    "ratelimit_redis_url": "INTEGRATION_SERVICE_RATELIMIT_REDIS_URL",
    "ratelimit_key_prefix": "INTEGRATION_SERVICE_RATELIMIT_KEY_PREFIX",
}


def _convert(name: str, raw: Any, origin: str) -> Any:
    default = getattr(Settings(), name)
    field_type = {f.name: f.type for f in dataclasses.fields(Settings)}[name]
    try:
        if raw is None:
            return None if "None" in str(field_type) else default
        if name == "listen_port_range":
            lo, hi = (int(x) for x in str(raw).split("-", 1))
            if not 1 <= lo <= hi <= 65535:
                raise ValueError
            return (lo, hi)
        if isinstance(default, bool):
            text = str(raw).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError
        if isinstance(default, float):
            number = float(raw)
            if not number > 0:
                raise ValueError
            return number
        if isinstance(default, int):
            value = int(raw)
            if name.endswith("port") and not 0 <= value <= 65535:
                raise ValueError
            if name.startswith("probe_") and value < 1:
                raise ValueError
            if name == "access_log_max_bytes" and value < 0:
                raise ValueError
            if name == "token_401_threshold" and value < 1:
                raise ValueError
            return value
        if isinstance(default, Path) or name in (
            "xds_tls_cert",
            "xds_tls_key",
            "xds_client_ca",
            "ratelimit_config_dir",
        ):
            return Path(str(raw))
        if name == "topology":
            if str(raw).strip().lower() not in ("pod", "shared"):
                raise ValueError
            return str(raw).strip().lower()
        if name in ("upstream_allowlist", "file_roots") and isinstance(raw, list):
            return ",".join(str(x).strip() for x in raw)
        if name == "auth":
            if str(raw).strip().lower() not in ("enabled", "disabled"):
                raise ValueError
            return str(raw).strip().lower()
        if name == "log_format" and str(raw) not in ("json", "console"):
            raise ValueError
        if name == "dns_servers" and isinstance(raw, list):
            return ",".join(str(x).strip() for x in raw)
        if name == "log_level":
            return str(raw).upper()
        if name == "ratelimit_address":
            host, _, port = str(raw).strip().rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError
            return str(raw).strip()
        return str(raw)
    except ValueError:
        hint = {
            "listen_port_range": "write LOW-HIGH, e.g. 10000-10999",
            "log_format": "use json or console",
            "auth": "use enabled or disabled (disabled only for local development)",
            "topology": "use pod (one control plane per Envoy) or shared",
            "ratelimit_address": "write host:port of envoyproxy/ratelimit's gRPC port",
        }.get(name, f"expected a value like {default!r}")
        raise RegistryError(
            [Problem(f"/{name}", f"invalid value for {name} (from {origin})", hint, file=origin)],
            "invalid settings",
        ) from None


def _read_yaml(path: Path) -> Any:
    try:
        return load_bounded(path.read_text(encoding="utf-8")) or {}
    except YamlLimitError as exc:
        problem = Problem(
            "", f"YAML refused: {exc.message}", exc.fix, file=str(path), line=exc.line
        )
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = Problem(
            "",
            f"YAML syntax error: {getattr(exc, 'problem', None) or exc}",
            "fix the YAML syntax at this position",
            file=str(path),
            line=mark.line + 1 if mark is not None else None,
        )
    raise RegistryError([problem], "invalid settings")


def load_settings(
    environ: Mapping[str, str], config_file: Path | None = None, **overrides: Any
) -> Settings:
    """File values, then environment variables, then explicit overrides (CLI flags)."""
    values: dict[str, Any] = {}
    path = config_file or Path(
        environ.get("INTEGRATION_SERVICE_CONFIG", "config/integration_service.yaml")
    )
    if path.exists():
        raw = _read_yaml(path)
        if not isinstance(raw, dict):
            raise RegistryError(
                [Problem("", "expected a mapping", file=str(path))], "invalid settings"
            )
        unknown = sorted(set(raw) - set(ENV_NAMES))
        if unknown:
            raise RegistryError(
                [
                    Problem(f"/{k}", f"unknown setting {k!r}", "remove it", file=str(path))
                    for k in unknown
                ],
                "invalid settings",
            )
        for name, value in raw.items():
            values[name] = _convert(name, value, str(path))
    for name, env in ENV_NAMES.items():
        if env in environ and environ[env] != "":
            values[name] = _convert(name, environ[env], env)
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = Settings(**values)
    _check_topology(settings)
    return settings


def _check_topology(settings: Settings) -> None:
    """The shared topology serves xDS beyond the pod: never without TLS and client certs."""
    if settings.topology != "shared":
        return
    missing = [
        name
        for name in ("xds_tls_cert", "xds_tls_key", "xds_client_ca")
        if getattr(settings, name) is None
    ]
    if missing:
        raise RegistryError(
            [
                Problem(
                    f"/{name}",
                    f"topology shared needs {name} ({ENV_NAMES[name]})",
                    "name the PEM file (a cert-manager Secret mount): the shared xDS server "
                    "only speaks TLS and requires client certificates",
                )
                for name in missing
            ],
            "invalid settings",
        )
