"""Service health: ``/health/live`` (the loop answers), ``/health/ready`` (this pod's data
path runs the current config) and ``/health`` (that, plus the store and the registry)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from control_plane.api.openapi.spec import ok, operation
from control_plane.keys import REGISTRY, STORE_HEALTH, TOKENS

__all__ = ["READINESS_CHECKS", "SYNC_CHECK", "routes"]

Check = Callable[[web.Application], Awaitable[dict[str, object]]]
READINESS_CHECKS = web.AppKey("readiness_checks", dict[str, Check])
# How this replica hears the others' changes (control_plane.app.replicas); absent: none.
SYNC_CHECK: web.AppKey[Check] = web.AppKey("sync_check")

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


async def _readiness(request: web.Request) -> dict[str, dict[str, object]]:
    """This pod's data path: Envoy live and running the current configuration."""
    return {name: await probe(request.app) for name, probe in request.app[READINESS_CHECKS].items()}


async def _service(request: web.Request) -> dict[str, dict[str, object]]:
    """What the control plane depends on beside the data path: the store, the registry,
    and how it keeps in step with other replicas (``postgres-notify``, ``redis``, or
    ``none``: SQLite, one replica), so a replica never diverges silently."""
    view = request.app[REGISTRY].view
    sync = request.app.get(SYNC_CHECK)
    return {
        "store": await request.app[STORE_HEALTH].check(),
        "registry": {
            "ok": True,
            "integrations": len(view.items),
            "file_error": view.file_error.render() if view.file_error else None,
        },
        "sync": await sync(request.app) if sync is not None else {"ok": True, "mode": "none"},
        "tokens": _tokens(request),
    }


def _tokens(request: web.Request) -> dict[str, object]:
    """Brokered tokens: not ok while one is failing or expired (its requests go out without
    a token, or will when it expires)."""
    broker = request.app.get(TOKENS)
    states = {ident: s.state for ident, s in (broker.statuses() if broker else {}).items()}
    troubled = sorted(i for i, state in states.items() if state in ("failing", "expired"))
    out: dict[str, object] = {"ok": not troubled, "integrations": states}
    if troubled:
        out["detail"] = "token refresh failing for " + ", ".join(troubled)
    return out


def _all_ok(checks: dict[str, dict[str, object]]) -> bool:
    return all(bool(c.get("ok")) for c in checks.values())


@routes.get("/health/ready")
@operation(
    "getReadiness",
    "service",
    "Readiness",
    "This pod's data path runs the current configuration: Envoy ready, and Envoy ACKed the "
    "current version. The store is not part of it (see /health).",
    {
        "200": ok("Readiness", "Ready"),
        "503": ok("Readiness", "Not ready; the failing checks say why"),
    },
)
async def ready(request: web.Request) -> web.Response:
    """Ready when Envoy is live and has ACKed the current version. A store or event-bus
    outage does not change what Envoy serves, so it is reported by ``/health`` and alerted
    on (``integration_service_store_up``), never used to pull application pods out."""
    checks = await _readiness(request)
    ready_ = _all_ok(checks)
    return web.json_response(
        {"status": "ready" if ready_ else "not_ready", "checks": checks},
        status=200 if ready_ else 503,
    )


@routes.get("/health")
@operation(
    "getServiceHealth",
    "service",
    "Service health",
    "The readiness checks and the store and registry, named; `degraded` when any fails "
    "(still 200).",
    {"200": ok("ServiceHealth", "Health")},
)
async def health(request: web.Request) -> web.Response:
    checks = {**await _service(request), **await _readiness(request)}
    return web.json_response({"status": "ok" if _all_ok(checks) else "degraded", "checks": checks})
