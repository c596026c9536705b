"""Service health: ``/health``, ``/health/live``, ``/health/ready``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from control_plane.api.openapi.spec import ok, operation
from control_plane.keys import REGISTRY, STORE

__all__ = ["READINESS_CHECKS", "routes"]

Check = Callable[[web.Application], Awaitable[dict[str, object]]]
READINESS_CHECKS = web.AppKey("readiness_checks", dict[str, Check])

routes = web.RouteTableDef()


@routes.get("/health/live")
@operation(
    "getLiveness",
    "service",
    "Liveness",
    "Answers while the event loop is responsive, with the lag it measured.",
    {"200": ok("Liveness", "Live")},
)
async def live(request: web.Request) -> web.Response:
    """Live while the event loop answers; reports the scheduling lag it measured."""
    started = time.monotonic()
    await asyncio.sleep(0)
    lag_ms = round((time.monotonic() - started) * 1000, 3)
    return web.json_response({"status": "live", "loop_lag_ms": lag_ms})


async def _checks(request: web.Request) -> dict[str, dict[str, object]]:
    checks: dict[str, dict[str, object]] = {}
    try:
        await asyncio.wait_for(request.app[STORE].ping(), timeout=2)
        checks["store"] = {"ok": True}
    except Exception as exc:  # any failure means "not reachable"
        checks["store"] = {"ok": False, "detail": str(exc) or type(exc).__name__}
    view = request.app[REGISTRY].view
    checks["registry"] = {
        "ok": True,
        "integrations": len(view.items),
        "file_error": view.file_error.render() if view.file_error else None,
    }
    for name, probe in request.app.get(READINESS_CHECKS, {}).items():
        checks[name] = await probe(request.app)
    return checks


@routes.get("/health/ready")
@operation(
    "getReadiness",
    "service",
    "Readiness",
    "Store reachable, Envoy ready, and Envoy ACKed the current version.",
    {
        "200": ok("Readiness", "Ready"),
        "503": ok("Readiness", "Not ready; the failing checks say why"),
    },
)
async def ready(request: web.Request) -> web.Response:
    """Ready when the store answers, Envoy is live and has ACKed the current version."""
    checks = await _checks(request)
    ok = all(bool(c.get("ok")) for c in checks.values())
    return web.json_response(
        {"status": "ready" if ok else "not_ready", "checks": checks}, status=200 if ok else 503
    )


@routes.get("/health")
@operation(
    "getServiceHealth",
    "service",
    "Service health",
    "Every readiness check, named; `degraded` when any fails (still 200).",
    {"200": ok("ServiceHealth", "Health")},
)
async def health(request: web.Request) -> web.Response:
    checks = await _checks(request)
    ok = all(bool(c.get("ok")) for c in checks.values())
    return web.json_response({"status": "ok" if ok else "degraded", "checks": checks})
