"""Per-integration operations read from Envoy: status, health, test, rate limit, cache,
circuit breaker. Envoy's admin API is the source of truth; nothing here is simulated.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections import deque
from typing import Any

from aiohttp import web

from control_plane.api.integrations import endpoint_of
from control_plane.api.problems import problem_response
from control_plane.keys import (
    CACHE_LEDGER,
    EVENTS,
    PIPELINE,
    PROBER,
    PROBES,
    RATE_SAMPLES,
    REGISTRY,
    SIDECAR,
    XDS_CACHE,
)
from control_plane.model import Integration
from control_plane.sidecar.admin import CIRCUIT_BREAKER_GAUGES, EnvoyAdminError
from control_plane.store.protocol import NotFoundError
from control_plane.xds.resources import CLUSTER, LISTENER

__all__ = ["routes"]

routes = web.RouteTableDef()

RATE_WINDOW_S = 60.0


def _item(request: web.Request) -> Integration:
    ident = request.match_info["integration_id"]
    item = request.app[REGISTRY].view.get(ident)
    if item is None:
        raise NotFoundError(f"no integration {ident!r}")
    return item


async def _stats(request: web.Request) -> dict[str, int | float] | None:
    try:
        async with request.app[SIDECAR].admin() as admin:
            return await admin.stats()
    except EnvoyAdminError:
        return None


def _envoy_down() -> web.Response:
    return problem_response(
        503,
        "Envoy's admin API is not reachable, so its live counters cannot be read; "
        "check /health/ready",
        headers={"Retry-After": "2"},
    )


def _config_state(request: web.Request, item: Integration) -> dict[str, Any]:
    pipeline = request.app[PIPELINE]
    cache = request.app[XDS_CACHE]
    snapshot = cache.snapshot
    node = cache.status.get(request.app[SIDECAR].node_id)
    expected = {
        "cluster": snapshot.resource_version(CLUSTER, item.id) if snapshot else None,
        "listener": snapshot.resource_version(LISTENER, item.id) if snapshot else None,
    }
    types: dict[str, Any] = {}
    overall = "pending"
    if not item.enabled:
        overall = "disabled"
    elif node is not None:
        states = []
        for type_url, label in ((CLUSTER, "cluster"), (LISTENER, "listener")):
            status = node.types.get(type_url)
            if status is None:
                continue
            types[label] = status.as_dict()
            states.append(status.state)
        if any(s == "nacked" for s in states):
            overall = "nacked"
        elif (
            states
            and all(s == "acked" for s in states)
            and snapshot is not None
            and (node.types[CLUSTER].acked_version is not None)
        ):
            overall = "acked"
    return {
        "state": overall,
        "snapshot_version": pipeline.state.snapshot_version,
        "resource_versions": expected,
        "node": {"id": request.app[SIDECAR].node_id, "connected": bool(node and node.connected)},
        "types": types,
        "error": pipeline.state.error,
        "warnings": [w for w in pipeline.state.warnings if item.id in w],
    }


@routes.get("/integrations/{integration_id}/status")
async def status(request: web.Request) -> web.Response:
    item = _item(request)
    events = request.app.get(EVENTS)
    return web.json_response(
        {
            "id": item.id,
            "enabled": item.enabled,
            "listen_port": item.listen_port,
            "endpoint": endpoint_of(item),
            "registry_version": item.version,
            "source": item.source,
            "config": _config_state(request, item),
            # Calls reported by other services' ``agent.executed`` events, per tenant.
            "usage": events.usage.for_integration(item.id) if events else {},
        }
    )


async def _envoy_view(request: web.Request, item: Integration) -> dict[str, Any]:
    try:
        async with request.app[SIDECAR].admin() as admin:
            clusters = await admin.clusters()
            stats = await admin.stats()
    except EnvoyAdminError as exc:
        return {"reachable": False, "detail": str(exc)}
    cluster = clusters.get(item.id)
    prefix = f"cluster.{item.id}."
    return {
        "reachable": True,
        "cluster_known": cluster is not None,
        "hosts": [
            {
                "address": h.address,
                "healthy": h.healthy,
                "health_flags": h.health_flags,
            }
            for h in (cluster.hosts if cluster else [])
        ],
        "outlier": {
            "ejections_active": stats.get(prefix + "outlier_detection.ejections_active", 0),
            "ejections_enforced_total": stats.get(
                prefix + "outlier_detection.ejections_enforced_total", 0
            ),
        },
    }


@routes.get("/integrations/{integration_id}/health")
async def integration_health(request: web.Request) -> web.Response:
    item = _item(request)
    book = request.app[PROBES]
    last = book.last(item.id)
    return web.json_response(
        {
            "id": item.id,
            "state": book.state_of(item.id),
            "last_probe": last.as_dict() if last else None,
            "envoy": await _envoy_view(request, item),
        }
    )


@routes.post("/integrations/{integration_id}/test")
async def test_integration(request: web.Request) -> web.Response:
    """Run the kind's probe once through the sidecar port; the result also feeds /health."""
    item = _item(request)
    if not item.enabled:
        return problem_response(
            409, f"integration {item.id!r} is disabled: the sidecar has no listener to probe"
        )
    check = await request.app[PROBER].check(item, "manual")
    return web.json_response(
        {"id": item.id, "kind": item.kind, "state": check.state, **check.result.as_dict()}
    )


def _limited_rate(request: web.Request, ident: str, limited: float) -> float:
    samples = request.app[RATE_SAMPLES].setdefault(ident, deque(maxlen=120))
    now = time.monotonic()
    samples.append((now, limited))
    while samples and now - samples[0][0] > RATE_WINDOW_S:
        samples.popleft()
    first_t, first_v = samples[0]
    return round((limited - first_v) / (now - first_t), 3) if now > first_t else 0.0


@routes.get("/integrations/{integration_id}/rate-limit")
async def rate_limit(request: web.Request) -> web.Response:
    item = _item(request)
    rl = item.policies.rate_limit
    configured: dict[str, Any] | None = None
    if rl is not None:
        configured = {
            "rule": rl.rule,
            "bucket": {
                "requests": rl.bucket.requests,
                "per_s": rl.bucket.per,
                "burst": rl.bucket.burst,
            },
            "tenant_header": rl.tenant_header if rl.per_tenant else None,
            "per_tenant": {
                t: {"requests": b.requests, "per_s": b.per, "burst": b.burst}
                for t, b in sorted(rl.per_tenant.items())
            },
        }
    stats = await _stats(request)
    if stats is None:
        return _envoy_down()
    prefix = f"{item.id}.http_local_rate_limit."
    limited = stats.get(prefix + "rate_limited", 0)
    return web.json_response(
        {
            "id": item.id,
            "configured": configured,
            "counters": {
                "allowed": stats.get(prefix + "ok", 0),
                "limited": limited,
                "enabled": stats.get(prefix + "enabled", 0),
                "enforced": stats.get(prefix + "enforced", 0),
            },
            "limited_per_s": _limited_rate(request, item.id, float(limited)),
            "window_s": RATE_WINDOW_S,
        }
    )


def _cache_sizes(stats: dict[str, int | float], path: str) -> tuple[float, float] | None:
    """Envoy's entries and bytes gauges of one cache path, or None while Envoy has not built
    a cache there (yet). Envoy appends "/" to ``cache_path`` and names the gauges
    ``cache.size_count|size_bytes.cache_path.<path>/``."""
    label = path.rstrip("/") + "/"
    count = stats.get(f"cache.size_count.cache_path.{label}")
    size = stats.get(f"cache.size_bytes.cache_path.{label}")
    if count is None or size is None:
        return None
    return float(count), float(size)


@routes.get("/integrations/{integration_id}/cache")
async def cache_stats(request: web.Request) -> web.Response:
    """Per-integration cache numbers, each from where Envoy 1.40 really has it:

    * hits / misses / stored / bypassed: the integration's own access log (Envoy counts
      hits and misses per cache *type* only, shared by all integrations); see
      ``control_plane.sidecar.accesslog`` for what each counts. Envoy is asked to flush its
      access-log buffers first (``POST /reopen_logs``); Envoy flushes from its own thread,
      so a request finished a moment ago may only be counted on the next read.
    * entries / bytes: Envoy's gauges for the integration's current cache path (0 until
      Envoy has built the cache there). Envoy's ``size_bytes`` counts only part of each
      new file (measured: 33 bytes for a 287-byte entry) until it rescans the directory, so
      ``disk`` reports the files and bytes actually in the directory as well.
    """
    item = _item(request)
    pipeline = request.app[PIPELINE]
    path = pipeline.cache_path(item.id)
    try:
        async with request.app[SIDECAR].admin() as admin:
            await admin.reopen_logs()  # flush buffered access-log lines first
            stats = await admin.stats()
    except EnvoyAdminError:
        return _envoy_down()
    counts = request.app[CACHE_LEDGER].counts(item.id)
    sizes = _cache_sizes(stats, str(path)) if item.policies.cache.enabled else None
    files = await asyncio.to_thread(
        lambda: [f.stat().st_size for f in path.glob("cache-*") if f.is_file()]
    )
    total = counts.hits + counts.misses
    return web.json_response(
        {
            "id": item.id,
            "enabled": item.policies.cache.enabled,
            "generation": pipeline.generations.cache.get(item.id, 0),
            "hits": counts.hits,
            "misses": counts.misses,
            "stored": counts.stored,
            "bypassed": counts.bypassed,
            "hit_ratio": round(counts.hits / total, 4) if total else None,
            # No gauge yet: Envoy has not built a cache at this path, so it holds nothing.
            "entries": sizes[0] if sizes else 0.0,
            "bytes": sizes[1] if sizes else 0.0,
            "disk": {"files": len(files), "bytes": sum(files)},
            "path": str(path),
        }
    )


@routes.post("/integrations/{integration_id}/cache/clear")
async def cache_clear(request: web.Request) -> web.Response:
    """Envoy has no purge: rotate the cache path. The new listener configuration points the
    filter at a fresh, empty directory, which makes Envoy build a new cache (its entries
    are in memory too, with open file handles, so deleting files alone would not do).
    Once Envoy ACKs the listener (or is not connected), the old directories are deleted;
    otherwise they stay (Envoy may still write there: see ``http_filters._cache`` on what a
    missing directory does to the file manager) and go with the next successful clear."""
    item = _item(request)
    if not item.policies.cache.enabled:
        return problem_response(
            409, f"integration {item.id!r} has no response cache (policies.cache.enabled is false)"
        )
    pipeline = request.app[PIPELINE]
    old, snapshot = pipeline.rotate_cache(item.id)
    if snapshot is None:
        return problem_response(
            503,
            f"the new cache path could not be pushed: {pipeline.state.error}",
            headers={"Retry-After": "2"},
        )
    cache = request.app[XDS_CACHE]
    node_id = request.app[SIDECAR].node_id
    acked = False
    connected = True
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        node = cache.status.get(node_id)
        if node is None or not node.connected:
            connected = False  # Envoy gets the new path when it connects
            break
        status = node.types.get(LISTENER)
        if status is not None and status.state == "nacked":
            break
        if (
            status is not None
            and status.state == "acked"
            and status.acked_version == snapshot.version_for(LISTENER)
        ):
            acked = True
            break
        await asyncio.sleep(0.05)
    current = pipeline.cache_path(item.id)

    def remove_old() -> None:
        # Every generation but the current one (earlier clears may have left some behind).
        for directory in current.parent.iterdir():
            if directory != current and directory.is_dir():
                shutil.rmtree(directory, ignore_errors=True)

    removed = acked or not connected
    if removed:
        await asyncio.to_thread(remove_old)
    return web.json_response(
        {
            "id": item.id,
            "generation": pipeline.generations.cache.get(item.id, 0),
            "snapshot_version": snapshot.version,
            "cleared_path": str(old),
            "acked": acked,
            "removed": removed,
        }
    )


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
async def circuit_breaker(request: web.Request) -> web.Response:
    item = _item(request)
    try:
        async with request.app[SIDECAR].admin() as admin:
            clusters = await admin.clusters()
            stats = await admin.stats()
    except EnvoyAdminError:
        return _envoy_down()
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
        "generation": request.app[PIPELINE].generations.cluster.get(item.id, 0),
    }
    view["state"] = _breaker_state(view)
    return web.json_response(view)


@routes.post("/integrations/{integration_id}/circuit-breaker/reset")
async def circuit_breaker_reset(request: web.Request) -> web.Response:
    """Envoy has no un-eject call: a new cluster generation makes it rebuild the cluster,
    which starts with no ejections and fresh outlier counters."""
    item = _item(request)
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
    acked = await _wait_acked(request, limit_s=5.0)
    return web.json_response(
        {
            "id": item.id,
            "generation": pipeline.generations.cluster.get(item.id, 0),
            "snapshot_version": snapshot.version,
            "acked": acked,
        },
        status=200 if acked else 202,
    )


async def _wait_acked(request: web.Request, limit_s: float) -> bool:
    """Wait until the node ACKs the current CDS version (202 instead of 200 if it does not)."""
    cache = request.app[XDS_CACHE]
    node_id = request.app[SIDECAR].node_id
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        node = cache.status.get(node_id)
        if node is None or not node.connected:
            return False  # no Envoy on the xDS stream: nothing can ACK, answer 202 at once
        snapshot = cache.snapshot
        if snapshot is not None and CLUSTER in node.types:
            status = node.types[CLUSTER]
            if status.state == "acked" and status.acked_version == snapshot.version_for(CLUSTER):
                return True
        await asyncio.sleep(0.05)
    return False
