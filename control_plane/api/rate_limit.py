"""``GET /integrations/{id}/rate-limit``: the configured bucket and Envoy's counters."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from aiohttp import web

from control_plane.api.lookup import envoy_down, envoy_stats, integration_of
from control_plane.api.openapi.spec import envoy_read, operation
from control_plane.keys import RATE_SAMPLES

__all__ = ["routes"]

routes = web.RouteTableDef()

RATE_WINDOW_S = 60.0


def _limited_rate(request: web.Request, ident: str, limited: float) -> float:
    samples = request.app[RATE_SAMPLES].setdefault(ident, deque(maxlen=120))
    now = time.monotonic()
    samples.append((now, limited))
    while samples and now - samples[0][0] > RATE_WINDOW_S:
        samples.popleft()
    first_t, first_v = samples[0]
    return round((limited - first_v) / (now - first_t), 3) if now > first_t else 0.0


@routes.get("/integrations/{integration_id}/rate-limit")
@operation(
    "getRateLimit",
    "traffic",
    "Rate-limit buckets and counters",
    "Configured token buckets; allowed and limited counts from Envoy's "
    "`<id>.http_local_rate_limit.*` stats; the limited rate over the last minute.",
    envoy_read("RateLimit", "Rate limit"),
    params=["IntegrationId"],
)
async def rate_limit(request: web.Request) -> web.Response:
    item = integration_of(request)
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
    stats = await envoy_stats(request)
    if stats is None:
        return envoy_down()
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
