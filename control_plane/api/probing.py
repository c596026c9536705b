"""``GET /integrations/{id}/health`` (last probe, Envoy's view of the hosts) and
``POST /integrations/{id}/test`` (run the kind's probe now, through the sidecar)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from control_plane.api.lookup import integration_of
from control_plane.api.openapi.spec import ok, operation, problem, response
from control_plane.api.problems import problem_response
from control_plane.api.status import token_status
from control_plane.keys import PROBER, PROBES, SIDECAR, TOKENS
from control_plane.model import Integration
from control_plane.probing.book import ProbeBook
from control_plane.sidecar.admin import EnvoyAdminError

__all__ = ["health_body", "probe_summary", "routes"]

routes = web.RouteTableDef()


async def _envoy_view(app: web.Application, item: Integration) -> dict[str, Any]:
    try:
        async with app[SIDECAR].admin() as admin:
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
@operation(
    "getIntegrationHealth",
    "health",
    "Last probe and Envoy's view",
    "The last probe result and, from Envoy's admin API, host health flags and "
    "outlier-detection state. `envoy.reachable` is false while Envoy is down. In token "
    "mode, the brokered token's state.",
    {"200": ok("IntegrationHealth", "Health"), "404": response("NotFound")},
    params=["IntegrationId"],
)
async def integration_health(request: web.Request) -> web.Response:
    return web.json_response(await health_body(request.app, integration_of(request)))


def probe_summary(book: ProbeBook, item: Integration) -> dict[str, Any]:
    """The health state and the last probe (the status page's health column)."""
    last = book.last(item.id)
    return {
        "id": item.id,
        "state": book.state_of(item.id),
        "last_probe": last.as_dict() if last else None,
    }


async def health_body(app: web.Application, item: Integration) -> dict[str, Any]:
    """The health body of one integration: the last probe and Envoy's view of its hosts."""
    return {
        **probe_summary(app[PROBES], item),
        "envoy": await _envoy_view(app, item),
        # Token mode: the brokered token's state (never the token).
        "token": token_status(app.get(TOKENS), item.id),
    }


@routes.post("/integrations/{integration_id}/test")
@operation(
    "testIntegration",
    "health",
    "Probe the integration now",
    "Runs the kind's probe once, through the sidecar, with its real client "
    "library; the result also feeds /health and the health filter of the list.",
    {
        "200": ok("IntegrationProbe", "The probe ran; `ok` says how it went"),
        "404": response("NotFound"),
        "409": problem("The integration is disabled: there is no listener to probe"),
    },
    params=["IntegrationId"],
)
async def test_integration(request: web.Request) -> web.Response:
    """Run the kind's probe once through the sidecar port; the result also feeds /health."""
    item = integration_of(request)
    if not item.enabled:
        return problem_response(
            409, f"integration {item.id!r} is disabled: the sidecar has no listener to probe"
        )
    check = await request.app[PROBER].check(item, "manual")
    return web.json_response(
        {"id": item.id, "kind": item.kind, "state": check.state, **check.result.as_dict()}
    )
