"""``GET /integrations/{id}/cache`` and ``POST /integrations/{id}/cache/clear``."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from control_plane.api.lookup import envoy_down, integration_of
from control_plane.api.openapi.spec import envoy_read, ok, operation, problem, response
from control_plane.api.problems import problem_response
from control_plane.keys import CACHE_LEDGER, PIPELINE, SIDECAR, XDS_CACHE
from control_plane.model import Integration
from control_plane.sidecar.accesslog import CacheCounts
from control_plane.sidecar.admin import EnvoyAdminError
from control_plane.xds.resources import LISTENER

__all__ = ["cache_body", "hit_ratio", "routes"]

routes = web.RouteTableDef()

# How long a clear waits for Envoy to run the new cache path before answering.
ACK_WAIT_S = 5.0


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
@operation(
    "getCache",
    "traffic",
    "Response-cache statistics",
    "Hits and misses of this integration, entries and bytes of its cache path.",
    envoy_read("CacheStats", "Cache statistics"),
    params=["IntegrationId"],
)
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
    body = await cache_body(request.app, integration_of(request))
    return envoy_down() if body is None else web.json_response(body)


def hit_ratio(counts: CacheCounts) -> float | None:
    """Hits over hits and misses; None before any cacheable request."""
    total = counts.hits + counts.misses
    return round(counts.hits / total, 4) if total else None


async def cache_body(app: web.Application, item: Integration) -> dict[str, Any] | None:
    """The cache body of one integration, or None while Envoy's admin API is unreachable."""
    pipeline = app[PIPELINE]
    path = pipeline.cache_path(item.id)
    try:
        async with app[SIDECAR].admin() as admin:
            await admin.reopen_logs()  # flush buffered access-log lines first
            stats = await admin.stats()
    except EnvoyAdminError:
        return None
    counts = app[CACHE_LEDGER].counts(item.id)
    sizes = _cache_sizes(stats, str(path)) if item.policies.cache.enabled else None
    files, disk_bytes = await asyncio.to_thread(pipeline.cache_disk, item.id)
    return {
        "id": item.id,
        "enabled": item.policies.cache.enabled,
        "generation": pipeline.cache_generation(item.id),
        "hits": counts.hits,
        "misses": counts.misses,
        "stored": counts.stored,
        "bypassed": counts.bypassed,
        "hit_ratio": hit_ratio(counts),
        # No gauge yet: Envoy has not built a cache at this path, so it holds nothing.
        "entries": sizes[0] if sizes else 0.0,
        "bytes": sizes[1] if sizes else 0.0,
        "disk": {"files": files, "bytes": disk_bytes},
        "path": str(path),
    }


@routes.post("/integrations/{integration_id}/cache/clear")
@operation(
    "clearCache",
    "traffic",
    "Empty the response cache",
    "Rotates the integration's cache path; the old directory is removed.",
    {
        "200": ok("CacheCleared", "Cleared"),
        "404": response("NotFound"),
        "409": response("Conflict"),
        "503": problem("The new cache path could not be pushed", "Retry-After"),
    },
    params=["IntegrationId"],
)
async def cache_clear(request: web.Request) -> web.Response:
    """Envoy has no purge: rotate the cache path. The new listener configuration points the
    filter at a fresh, empty directory, which makes Envoy build a new cache (its entries
    are in memory too, with open file handles, so deleting files alone would not do).
    Once Envoy ACKs the listener (or is not connected), the old directories are deleted;
    otherwise they stay (Envoy may still write there: see ``http_filters._cache`` on what a
    missing directory does to the file manager) and go with the next successful clear."""
    item = integration_of(request)
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
    outcome = await request.app[XDS_CACHE].status.wait_acked(
        request.app[SIDECAR].node_id, LISTENER, snapshot.version_for(LISTENER), ACK_WAIT_S
    )
    acked = outcome == "acked"
    # Not connected: Envoy gets the new path when it connects and never uses the old one.
    removed = acked or outcome == "disconnected"
    if removed:
        await asyncio.to_thread(pipeline.prune_cache, item.id)
    return web.json_response(
        {
            "id": item.id,
            "generation": pipeline.cache_generation(item.id),
            "snapshot_version": snapshot.version,
            "cleared_path": str(old),
            "acked": acked,
            "removed": removed,
        }
    )
