"""``GET /integrations/{id}/circuit-breaker`` and ``POST .../circuit-breaker/reset``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from control_plane.api.lookup import envoy_down, integration_of
from control_plane.api.openapi.spec import envoy_read, ok, operation, problem, response
from control_plane.api.problems import problem_response
from control_plane.keys import PIPELINE, SIDECAR, XDS_CACHE
from control_plane.model import Integration
from control_plane.sidecar.admin import CIRCUIT_BREAKER_GAUGES, ClusterStatus, EnvoyAdminError
from control_plane.xds.resources import CLUSTER

__all__ = ["breaker_view", "routes"]

routes = web.RouteTableDef()

# How long a reset waits for Envoy to rebuild the cluster before answering 202.
ACK_WAIT_S = 5.0


def _breaker_state(view: dict[str, Any]) -> str:
    """closed | open | half_open — see docs/api.md, "Circuit breaker state"."""
    hosts = view["hosts"]
    ejected = [h for h in hosts if "FAILED_OUTLIER_CHECK" in h["health_flags"]]
    overflow = any(view["gauges"].get(k, 0) for k in ("cx_open", "rq_open", "rq_pending_open"))
    if (hosts and len(ejected) == len(hosts)) or overflow:
        return "open"
    if ejected or view["gauges"].get("rq_retry_open", 0):
        return "half_open"
    return "closed"


@routes.get("/integrations/{integration_id}/circuit-breaker")
@operation(
    "getCircuitBreaker",
    "traffic",
    "Circuit-breaker and outlier-detection state",
    "Thresholds, Envoy's `*_open` and `remaining_*` gauges, ejections and the "
    "derived state closed | open | half_open.",
    envoy_read("CircuitBreaker", "Circuit breaker"),
    params=["IntegrationId"],
)
async def circuit_breaker(request: web.Request) -> web.Response:
    item = integration_of(request)
    try:
        async with request.app[SIDECAR].admin() as admin:
            clusters = await admin.clusters()
            stats = await admin.stats()
    except EnvoyAdminError:
        return envoy_down()
    return web.json_response(
        breaker_view(item, clusters, stats, request.app[PIPELINE].cluster_generation(item.id))
    )


def breaker_view(
    item: Integration,
    clusters: Mapping[str, ClusterStatus],
    stats: Mapping[str, int | float],
    generation: int,
) -> dict[str, Any]:
    """The circuit-breaker body of one integration from Envoy's ``/clusters`` and ``/stats``
    (the status page derives its breaker column from this too)."""
    cb = item.policies.circuit_breaker
    od = item.policies.outlier_detection
    prefix = f"cluster.{item.id}."
    gauges = {
        name: stats.get(f"{prefix}circuit_breakers.default.{name}", 0)
        for name in CIRCUIT_BREAKER_GAUGES
    }
    cluster = clusters.get(item.id)
    hosts = [
        {
            "address": h.address,
            "health_flags": h.health_flags,
            "failed_outlier_check": "FAILED_OUTLIER_CHECK" in h.health_flags,
        }
        for h in (cluster.hosts if cluster else [])
    ]
    view: dict[str, Any] = {
        "id": item.id,
        "thresholds": {
            "max_connections": cb.max_connections,
            "max_pending_requests": cb.max_pending_requests,
            "max_requests": cb.max_requests,
            "max_retries": cb.max_retries,
        },
        "outlier_detection": {
            "enabled": od.enabled,
            "consecutive_5xx": od.consecutive_5xx,
            "base_ejection_time_s": od.base_ejection_time,
            "max_ejection_percent": od.max_ejection_percent,
            "ejections_active": stats.get(prefix + "outlier_detection.ejections_active", 0),
            "ejections_enforced_total": stats.get(
                prefix + "outlier_detection.ejections_enforced_total", 0
            ),
        },
        "gauges": gauges,
        "overflow": {
            "upstream_cx_overflow": stats.get(prefix + "upstream_cx_overflow", 0),
            "upstream_rq_pending_overflow": stats.get(prefix + "upstream_rq_pending_overflow", 0),
            "upstream_rq_retry_overflow": stats.get(prefix + "upstream_rq_retry_overflow", 0),
        },
        "hosts": hosts,
        "generation": generation,
    }
    view["state"] = _breaker_state(view)
    return view


@routes.post("/integrations/{integration_id}/circuit-breaker/reset")
@operation(
    "resetCircuitBreaker",
    "traffic",
    "Reset the circuit breaker",
    "Bumps the cluster generation so Envoy rebuilds the cluster with no ejections.",
    {
        "200": ok("CircuitBreakerReset", "Reset and ACKed by Envoy"),
        "202": ok("CircuitBreakerReset", "Reset pushed, not yet ACKed"),
        "404": response("NotFound"),
        "409": response("Conflict"),
        "503": problem("The new configuration could not be built", "Retry-After"),
    },
    params=["IntegrationId"],
)
async def circuit_breaker_reset(request: web.Request) -> web.Response:
    """Envoy has no un-eject call: a new cluster generation makes it rebuild the cluster,
    which starts with no ejections and fresh outlier counters."""
    item = integration_of(request)
    if not item.enabled:
        return problem_response(409, f"integration {item.id!r} is disabled; nothing to reset")
    pipeline = request.app[PIPELINE]
    snapshot = pipeline.reset_cluster(item.id)
    if snapshot is None:
        return problem_response(
            503,
            f"the reset could not be pushed: {pipeline.state.error}",
            headers={"Retry-After": "2"},
        )
    outcome = await request.app[XDS_CACHE].status.wait_acked(
        request.app[SIDECAR].node_id, CLUSTER, snapshot.version_for(CLUSTER), ACK_WAIT_S
    )
    acked = outcome == "acked"  # else 202: no Envoy on the stream, a NACK, or still waiting
    return web.json_response(
        {
            "id": item.id,
            "generation": pipeline.cluster_generation(item.id),
            "snapshot_version": snapshot.version,
            "acked": acked,
        },
        status=200 if acked else 202,
    )
