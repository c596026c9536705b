"""``GET /integrations/{id}/rate-limit``: the configured bucket and Envoy's counters."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from control_plane.api.lookup import envoy_down, envoy_stats, integration_of
from control_plane.api.openapi.spec import envoy_read, operation
from control_plane.keys import FLEET, GLOBAL_USAGE, MEMBERSHIP, PIPELINE, RATE_SAMPLES
from control_plane.model import Integration

__all__ = ["RATE_WINDOW_S", "quota_view", "rate_limit_view", "routes"]

routes = web.RouteTableDef()

RATE_WINDOW_S = 60.0

Samples = dict[str, deque[tuple[float, float, float]]]


def _window(samples: Samples, ident: str, allowed: float, limited: float) -> dict[str, float]:
    """Record ``(now, allowed, limited)`` and answer what the last minute of samples shows:
    the requests allowed and limited since the oldest sample in the window and the limited
    rate. The window starts when the counters were first read (by the API or the status
    page), so right after start-up it is shorter than a minute."""
    series = samples.setdefault(ident, deque(maxlen=120))
    now = time.monotonic()
    if series and (allowed < series[-1][1] or limited < series[-1][2]):
        series.clear()  # counters only grow: Envoy restarted and began at 0
    series.append((now, allowed, limited))
    while series and now - series[0][0] > RATE_WINDOW_S:
        series.popleft()
    first_t, first_allowed, first_limited = series[0]
    return {
        "allowed": allowed - first_allowed,
        "limited": limited - first_limited,
        "seconds": round(now - first_t, 3),
        "limited_per_s": round((limited - first_limited) / (now - first_t), 3)
        if now > first_t
        else 0.0,
    }


def rate_limit_view(
    item: Integration, stats: Mapping[str, int | float], samples: Samples
) -> dict[str, Any]:
    """The rate-limit body of one integration from Envoy's ``/stats`` (the status page's
    rate-limit column is derived from this too)."""
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
    prefix = f"{item.id}.http_local_rate_limit."
    allowed = stats.get(prefix + "ok", 0)
    limited = stats.get(prefix + "rate_limited", 0)
    window = _window(samples, item.id, float(allowed), float(limited))
    return {
        "id": item.id,
        "configured": configured,
        "counters": {
            "allowed": allowed,
            "limited": limited,
            "enabled": stats.get(prefix + "enabled", 0),
            "enforced": stats.get(prefix + "enforced", 0),
        },
        "limited_per_s": window["limited_per_s"],
        "window_s": RATE_WINDOW_S,
        "last_minute": {
            "allowed": window["allowed"],
            "limited": window["limited"],
            "seconds": window["seconds"],
        },
    }


@routes.get("/integrations/{integration_id}/rate-limit")
@operation(
    "getRateLimit",
    "traffic",
    "Rate-limit buckets and counters",
    "Configured token buckets; allowed and limited counts from Envoy's "
    "`<id>.http_local_rate_limit.*` stats; the limited rate and the requests allowed and "
    "limited over the last minute (`last_minute.seconds`: the window covered so far).",
    envoy_read("RateLimit", "Rate limit"),
    params=["IntegrationId"],
)
async def rate_limit(request: web.Request) -> web.Response:
    item = integration_of(request)
    stats = await envoy_stats(request)
    if stats is None:
        return envoy_down()
    body = rate_limit_view(item, stats, request.app[RATE_SAMPLES])
    body.update(await quota_view(request.app, item, stats))
    return web.json_response(body)


async def quota_view(
    app: web.Application, item: Integration, stats: Mapping[str, int | float] | None = None
) -> dict[str, Any]:
    """Where the quota holds: the scope, this pod's share of a fleet bucket, and the fleet's
    figures (summed over live members for ``fleet``, exact from Redis for ``global``)."""
    rl = item.policies.rate_limit
    if rl is None:
        return {"scope": None, "share": None, "fleet": None, "global": None}
    pipeline, shared = app[PIPELINE], app.get(FLEET) is not None
    share: dict[str, Any]
    if rl.scope != "fleet":
        share = {"members": 1, "fraction": 1.0}
    elif shared:
        # Each workload's nodes divide the bucket among themselves.
        share = {
            "workloads": {
                name: {"members": n, "fraction": round(1 / n, 6)}
                for name, n in sorted(pipeline.workload_members.items())
            }
        }
    else:
        n = pipeline.fleet_members
        share = {
            "members": n,
            "fraction": round(1 / n, 6),
            "requests_per_s": round(rl.bucket.requests / rl.bucket.per / n, 6),
        }
    fleet: dict[str, Any] | None = None
    if rl.scope == "fleet":
        membership = app.get(MEMBERSHIP)
        status = membership.status if membership is not None else None
        counters = await membership.fleet_counters(item.id) if membership else None
        fleet = {
            "membership": None
            if status is None
            else {"source": status.source, "connected": status.connected, "error": status.error},
            "counters": counters,
            "counters_unavailable": None
            if counters is not None
            else "the application pods' Envoys are read by nobody here (see their metrics)"
            if shared
            else "no Redis: each pod sees only itself",
        }
    usage = app.get(GLOBAL_USAGE)
    global_: dict[str, Any] | None = None
    if rl.scope == "global":
        global_ = (
            await usage.usage(item)
            if usage is not None
            else {"error": "no Redis to read envoyproxy/ratelimit's counters from"}
        )
        # This Envoy's answers from the service: ``error`` / ``failure_mode_allowed`` grow
        # while it cannot answer (fail open lets those requests through).
        prefix = f"cluster.{item.id}.ratelimit."
        global_["service"] = {
            key: (stats or {}).get(prefix + key, 0)
            for key in ("ok", "over_limit", "error", "failure_mode_allowed")
        }
        global_["failure_mode"] = rl.failure_mode
    return {"scope": rl.scope, "share": share, "fleet": fleet, "global": global_}
