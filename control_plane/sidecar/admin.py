"""Typed asyncio client for Envoy's admin API on loopback.

Only the endpoints the control plane needs, each with a timeout; any failure to talk to
Envoy (refused connection, timeout, unexpected status) raises :class:`EnvoyAdminError`.
Reference: https://www.envoyproxy.io/docs/envoy/latest/operations/admin
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self

import aiohttp

__all__ = [
    "CIRCUIT_BREAKER_GAUGES",
    "CircuitBreakerThresholds",
    "ClusterStatus",
    "EnvoyAdmin",
    "EnvoyAdminError",
    "HostStatus",
    "ServerInfo",
    "StatKind",
]

# ``/stats?type=``: one of Envoy's stat stores.
StatKind = Literal["Counters", "Gauges"]

# HostHealthStatus booleans (envoy/admin/v3/clusters.proto) mapped to the names of Envoy's
# Host::HealthFlag enum, which is how the text form of /clusters prints them
# (e.g. "health_flags::/failed_outlier_check"). A healthy host has no flags.
_BOOL_HEALTH_FLAGS = {
    "failed_active_health_check": "FAILED_ACTIVE_HC",
    "failed_outlier_check": "FAILED_OUTLIER_CHECK",
    "failed_active_degraded_check": "DEGRADED_ACTIVE_HC",
    "pending_dynamic_removal": "PENDING_DYNAMIC_REMOVAL",
    "pending_active_hc": "PENDING_ACTIVE_HC",
    "excluded_via_immediate_hc_fail": "EXCLUDED_VIA_IMMEDIATE_HC_FAIL",
    "active_hc_timeout": "ACTIVE_HC_TIMEOUT",
}
_EDS_HEALTH_FLAGS = {
    "UNHEALTHY": "FAILED_EDS_HEALTH",
    "TIMEOUT": "FAILED_EDS_HEALTH",
    "DEGRADED": "DEGRADED_EDS_HEALTH",
    "DRAINING": "EDS_STATUS_DRAINING",
}


# Envoy's per-cluster circuit-breaker gauges (``cluster.<name>.circuit_breakers.default.*``):
# ``*_open`` is 1 while that limit is reached, ``remaining_*`` needs ``track_remaining``.
CIRCUIT_BREAKER_GAUGES: tuple[str, ...] = (
    "cx_open",
    "cx_pool_open",
    "rq_open",
    "rq_pending_open",
    "rq_retry_open",
    "remaining_cx",
    "remaining_pending",
    "remaining_rq",
    "remaining_retries",
)


class EnvoyAdminError(Exception):
    """Envoy's admin API could not be reached or answered unexpectedly."""


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """The parts of ``GET /server_info`` the control plane reports."""

    version: str
    #: PRE_INITIALIZING, INITIALIZING, LIVE or DRAINING (envoy.admin.v3.ServerInfo.State).
    state: str
    node_id: str
    node_cluster: str
    raw: dict[str, Any]


@dataclass(frozen=True, slots=True)
class HostStatus:
    """One upstream host of a cluster as ``GET /clusters?format=json`` reports it."""

    address: str
    #: Envoy health flags, e.g. ``FAILED_OUTLIER_CHECK``; empty when the host is healthy.
    health_flags: tuple[str, ...]
    eds_health_status: str
    weight: int
    hostname: str
    #: Per-host counters and gauges (cx_total, rq_error, cx_active, ...); absent ones are 0.
    stats: dict[str, int]
    #: Outlier detection success rate in percent, when Envoy has computed one.
    success_rate: float | None

    @property
    def healthy(self) -> bool:
        return not self.health_flags


@dataclass(frozen=True, slots=True)
class CircuitBreakerThresholds:
    """Effective circuit breaker limits of one routing priority."""

    priority: str
    max_connections: int | None
    max_pending_requests: int | None
    max_requests: int | None
    max_retries: int | None


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    """One cluster of ``GET /clusters?format=json``."""

    name: str
    added_via_api: bool
    hosts: tuple[HostStatus, ...]
    circuit_breakers: tuple[CircuitBreakerThresholds, ...]


def _socket_address(address: dict[str, Any]) -> str:
    if "socket_address" in address:
        sock = address["socket_address"]
        host = str(sock.get("address", ""))
        port = int(sock.get("port_value", 0))
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if "pipe" in address:
        return f"unix:{address['pipe'].get('path', '')}"
    return str(address)


def _host_status(raw: dict[str, Any]) -> HostStatus:
    health = raw.get("health_status", {})
    flags = [flag for key, flag in _BOOL_HEALTH_FLAGS.items() if health.get(key)]
    eds_status = str(health.get("eds_health_status", "UNKNOWN"))
    if eds_status in _EDS_HEALTH_FLAGS:
        flags.append(_EDS_HEALTH_FLAGS[eds_status])
    # Proto3 JSON: uint64 values arrive as strings and zero values are omitted.
    stats = {str(s["name"]): int(s.get("value", 0)) for s in raw.get("stats", [])}
    success_rate = raw.get("success_rate", {}).get("value")
    return HostStatus(
        address=_socket_address(raw.get("address", {})),
        health_flags=tuple(flags),
        eds_health_status=eds_status,
        weight=int(raw.get("weight", 0)),
        hostname=str(raw.get("hostname", "")),
        stats=stats,
        success_rate=None if success_rate is None else float(success_rate),
    )


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _cluster_status(raw: dict[str, Any]) -> ClusterStatus:
    thresholds = tuple(
        CircuitBreakerThresholds(
            # DEFAULT is the proto3 zero value, so JSON leaves it out.
            priority=str(t.get("priority", "DEFAULT")),
            max_connections=_optional_int(t.get("max_connections")),
            max_pending_requests=_optional_int(t.get("max_pending_requests")),
            max_requests=_optional_int(t.get("max_requests")),
            max_retries=_optional_int(t.get("max_retries")),
        )
        for t in raw.get("circuit_breakers", {}).get("thresholds", [])
    )
    return ClusterStatus(
        name=str(raw["name"]),
        added_via_api=bool(raw.get("added_via_api", False)),
        hosts=tuple(_host_status(h) for h in raw.get("host_statuses", [])),
        circuit_breakers=thresholds,
    )


class EnvoyAdmin:
    """Client for one Envoy's admin API, e.g. ``EnvoyAdmin("http://127.0.0.1:9901")``.

    Use as an async context manager, or call :meth:`close`. A caller-owned
    ``aiohttp.ClientSession`` may be passed in; it is then not closed here.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 5.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        # Created lazily: a ClientSession must be made inside a running event loop.
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> tuple[int, str]:
        url = f"{self.base_url}{path}"
        try:
            async with self._client().request(
                method, url, params=params, timeout=self._timeout
            ) as response:
                body = await response.text()
                status = response.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise EnvoyAdminError(
                f"Envoy admin {method} {url} failed: {type(exc).__name__}: {exc}"
            ) from exc
        if status not in ok:
            raise EnvoyAdminError(f"Envoy admin {method} {url} answered {status}: {body[:200]}")
        return status, body

    async def _get_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        _, body = await self._request("GET", path, params=params)
        try:
            return json.loads(body)
        except ValueError as exc:
            raise EnvoyAdminError(f"Envoy admin GET {path} returned invalid JSON") from exc

    async def ready(self) -> bool:
        """``GET /ready``: True when the server state is LIVE (200), False otherwise (503)."""
        status, _ = await self._request("GET", "/ready", ok=(200, 503))
        return status == 200

    async def server_info(self) -> ServerInfo:
        """``GET /server_info``."""
        raw = await self._get_json("/server_info")
        node = raw.get("node", {})
        return ServerInfo(
            version=str(raw.get("version", "")),
            state=str(raw.get("state", "")),
            node_id=str(node.get("id", "")),
            node_cluster=str(node.get("cluster", "")),
            raw=raw,
        )

    async def _stats_entries(
        self,
        pattern: str | None = None,
        *,
        used_only: bool = False,
        kind: StatKind | None = None,
    ) -> list[dict[str, Any]]:
        params = {"format": "json"}
        if pattern is not None:
            params["filter"] = pattern  # RE2, matched by Envoy against each stat name
        if used_only:
            params["usedonly"] = ""  # only stats written at least once
        if kind is not None:
            params["type"] = kind  # one kind of stat: Envoy walks only that store
        raw = await self._get_json("/stats", params)
        entries: list[dict[str, Any]] = raw.get("stats", [])
        return entries

    async def stats(
        self,
        pattern: str | None = None,
        *,
        used_only: bool = False,
        kind: StatKind | None = None,
    ) -> dict[str, int | float]:
        """``GET /stats?format=json``: counters and gauges by name.

        Text readouts (e.g. ``cluster_manager.cds.version_text``) and histograms are left
        out; see :meth:`histograms`. ``pattern`` (a regex) limits the answer to matching
        names: with 1,000 integrations the full document costs Envoy's main thread — the
        one that applies xDS updates — and our event loop 150-200 ms to build and decode.
        ``used_only`` (``usedonly``) leaves out stats never written (still zero); Envoy
        checks that before it builds a stat's name for the regex, which is most of a
        filtered request's cost. ``kind`` (``type``): only counters or only gauges, so
        Envoy walks one of its stores (each about half of the request's time).
        """
        result: dict[str, int | float] = {}
        for entry in await self._stats_entries(pattern, used_only=used_only, kind=kind):
            value = entry.get("value")
            if "name" in entry and isinstance(value, int | float) and not isinstance(value, bool):
                result[str(entry["name"])] = value
        return result

    async def histograms(self) -> dict[str, dict[str, float | None]]:
        """Cumulative histogram quantiles by name, e.g. ``{"P99": 12.5, ...}``.

        ``None`` means the histogram has no samples yet.
        """
        result: dict[str, dict[str, float | None]] = {}
        for entry in await self._stats_entries():
            histograms = entry.get("histograms")
            if not isinstance(histograms, dict):
                continue
            quantiles = [f"P{q:g}" for q in histograms.get("supported_quantiles", [])]
            for computed in histograms.get("computed_quantiles", []):
                values = [v.get("cumulative") for v in computed.get("values", [])]
                result[str(computed["name"])] = dict(zip(quantiles, values, strict=False))
        return result

    async def stats_prometheus(self) -> str:
        """``GET /stats/prometheus``: the Prometheus text exposition format."""
        _, body = await self._request("GET", "/stats/prometheus")
        return body

    async def clusters(self) -> dict[str, ClusterStatus]:
        """``GET /clusters?format=json``: every cluster with its hosts, by cluster name."""
        raw = await self._get_json("/clusters", {"format": "json"})
        statuses = (_cluster_status(c) for c in raw.get("cluster_statuses", []))
        return {status.name: status for status in statuses}

    async def config_dump(
        self, resource: str | None = None, *, include_eds: bool = False
    ) -> dict[str, Any]:
        """``GET /config_dump``, optionally only one ``resource`` such as
        ``dynamic_active_clusters``; ``include_eds`` adds the endpoint configs."""
        params: dict[str, str] = {}
        if resource is not None:
            params["resource"] = resource
        path = "/config_dump?include_eds" if include_eds else "/config_dump"
        dump: dict[str, Any] = await self._get_json(path, params or None)
        return dump

    async def drain_listeners(self, graceful: bool = True) -> None:
        """``POST /drain_listeners``.

        With ``graceful`` Envoy first discourages requests for ``--drain-time-s`` (HTTP/1.1
        ``Connection: close``, HTTP/2 GOAWAY) and only then closes the listeners; without it
        the listeners stop at once. Envoy keeps running either way; it does not exit.
        https://www.envoyproxy.io/docs/envoy/latest/operations/admin#post--drain_listeners
        """
        # A bare flag, spelled as in the docs: Envoy only tests for the parameter's presence.
        await self._request("POST", "/drain_listeners?graceful" if graceful else "/drain_listeners")

    async def reopen_logs(self) -> None:
        """``POST /reopen_logs``: flush and reopen every access log (nothing else changes).

        Envoy buffers access-log writes for up to ``--file-flush-interval-msec``; counting
        from the files right after this sees every request Envoy has finished.
        """
        await self._request("POST", "/reopen_logs")
