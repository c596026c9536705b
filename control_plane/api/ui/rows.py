"""The overview's rows: one per integration, each column derived by the API's own code.

One read of Envoy's admin API (``/clusters`` and a filtered ``/stats``) serves every row;
per integration the columns come from the same functions the endpoints answer with:
``status_body``'s ``integration_config`` (config), ``probe_summary`` (health),
``breaker_view`` (circuit breaker), ``rate_limit_view`` (rate limit) and ``hit_ratio``
(cache). Rows are plain data; :mod:`control_plane.api.ui.pages` renders them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from control_plane.api.cache import hit_ratio
from control_plane.api.circuit_breaker import breaker_view
from control_plane.api.probing import probe_summary
from control_plane.api.rate_limit import rate_limit_view
from control_plane.keys import (
    CACHE_LEDGER,
    PIPELINE,
    PROBES,
    RATE_SAMPLES,
    REGISTRY,
    SIDECAR,
    XDS_CACHE,
)
from control_plane.model import Integration
from control_plane.sidecar.admin import ClusterStatus, EnvoyAdminError
from control_plane.xds.config_state import integration_config

__all__ = ["OVERVIEW_STATS", "Row", "collect_rows", "problem_rank"]

# Only the stats the columns read: rate-limit counters, ejections and the breaker's open
# gauges (six per integration; at 1,000 integrations every further one is 1,000 more
# entries for Envoy to serialize and for us to decode each tick).
OVERVIEW_STATS = (
    r"(\.http_local_rate_limit\.(ok|rate_limited)"
    r"|\.outlier_detection\.ejections_active"
    r"|\.circuit_breakers\.default\.(cx|rq|rq_pending|rq_retry)_open)$"
)


@dataclass(frozen=True, slots=True)
class Row:
    """What one overview row shows. ``rank``: lower sorts first (problems first)."""

    id: str
    tenant: str
    kind: str
    description: str
    port: int | None
    enabled: bool
    config: str  # acked | pending | nacked | disabled
    config_version: str | None
    nack: str | None
    nodes_lagging: int
    nodes: int
    health: str  # healthy | unhealthy | unknown
    probe_at: str | None
    probe_step: str | None
    probe_detail: str | None
    breaker: str  # closed | open | half_open | unknown (Envoy unreachable)
    ejected: int
    hosts: int
    rate_limited: bool  # a rate limit is configured
    allowed_1m: float | None
    limited_1m: float | None
    cache_enabled: bool
    cache_ratio: float | None
    rank: int

    @property
    def problem(self) -> bool:
        return self.rank < RANK_OK


RANK_OK = 5


def problem_rank(config: str, breaker: str, health: str, limited: float | None) -> int:
    """0 NACKed, 1 breaker open, 2 unhealthy, 3 half-open or pending, 4 limiting now,
    5 fine, 6 disabled."""
    if config == "disabled":
        return 6
    if config == "nacked":
        return 0
    if breaker == "open":
        return 1
    if health == "unhealthy":
        return 2
    if breaker == "half_open" or config == "pending":
        return 3
    if limited:
        return 4
    return RANK_OK


def _nack_text(config: Mapping[str, Any]) -> str | None:
    for label in ("listener", "cluster"):
        block = config["types"].get(label, {})
        if block.get("resource_state") == "nacked":
            return str(block.get("resource_nack") or block.get("last_nack", {}).get("message"))
    return None


def _acked_version(config: Mapping[str, Any]) -> str | None:
    """The version the node last ACKed for the integration's listener (else cluster)."""
    for label in ("listener", "cluster"):
        version = config["types"].get(label, {}).get("acked_version")
        if version:
            return str(version)
    return None


async def _envoy(
    app: web.Application,
) -> tuple[dict[str, ClusterStatus], dict[str, int | float]] | None:
    try:
        async with app[SIDECAR].admin(timeout=2.0) as admin:
            # Used only: a stat never written is 0 to every column, and Envoy then names
            # only the stats written: about half the time on its main thread at 1,000.
            return await admin.clusters(), await admin.stats(OVERVIEW_STATS, used_only=True)
    except EnvoyAdminError:
        return None


def row_of(
    app: web.Application,
    item: Integration,
    envoy: tuple[dict[str, ClusterStatus], dict[str, int | float]] | None,
    node_ids: list[str],
) -> Row:
    cache, pipeline = app[XDS_CACHE], app[PIPELINE]
    config = integration_config(cache, app[SIDECAR].node_id, item, pipeline.state)
    lagging = 0
    for node_id in node_ids:
        other = config if node_id == app[SIDECAR].node_id else None
        other = other or integration_config(cache, node_id, item, pipeline.state)
        lagging += other["state"] not in ("acked", "disabled")
    probe = probe_summary(app[PROBES], item)
    last = probe["last_probe"]
    breaker, ejected, hosts = "unknown", 0, 0
    allowed: float | None = None
    limited: float | None = None
    if envoy is not None and item.enabled:
        clusters, stats = envoy
        view = breaker_view(item, clusters, stats, pipeline.cluster_generation(item.id))
        breaker = view["state"]
        hosts = len(view["hosts"])
        ejected = sum(1 for h in view["hosts"] if h["failed_outlier_check"])
        if item.policies.rate_limit is not None:
            window = rate_limit_view(item, stats, app[RATE_SAMPLES])["last_minute"]
            allowed, limited = window["allowed"], window["limited"]
    elif not item.enabled:
        breaker = "disabled"
    cache_on = item.policies.cache.enabled
    ratio = hit_ratio(app[CACHE_LEDGER].counts(item.id)) if cache_on else None
    return Row(
        id=item.id,
        tenant=item.tenant,
        kind=item.kind,
        description=item.description,
        port=item.listen_port,
        enabled=item.enabled,
        config=config["state"],
        config_version=_acked_version(config),
        nack=_nack_text(config) if config["state"] == "nacked" else None,
        nodes_lagging=lagging,
        nodes=len(node_ids),
        health=probe["state"],
        probe_at=last["at"] if last else None,
        probe_step=last["step"] if last and not last["ok"] else None,
        probe_detail=last["detail"] if last and not last["ok"] else None,
        breaker=breaker,
        ejected=ejected,
        hosts=hosts,
        rate_limited=item.policies.rate_limit is not None,
        allowed_1m=allowed,
        limited_1m=limited,
        cache_enabled=cache_on,
        cache_ratio=ratio,
        rank=problem_rank(config["state"], breaker, probe["state"], limited),
    )


async def collect_rows(app: web.Application) -> dict[str, Row]:
    """Every integration's row (all tenants; the caller filters), problems first."""
    envoy = await _envoy(app)
    # Nodes lagging: of the nodes connected now (and this pod's own, connected or not).
    own = app[SIDECAR].node_id
    connected = [n.node_id for n in app[XDS_CACHE].status.nodes() if n.connected]
    node_ids = [own, *(n for n in connected if n != own)]
    rows = [row_of(app, item, envoy, node_ids) for item in app[REGISTRY].view.items.values()]
    rows.sort(key=lambda r: (r.rank, r.id))
    return {row.id: row for row in rows}
