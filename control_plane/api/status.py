"""``GET /integrations/{id}/status``: what Envoy runs of the integration (the derivation
is ``control_plane.xds.config_state``) and the calls other services reported for it."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from control_plane.api.integrations import endpoint_of
from control_plane.api.lookup import integration_of
from control_plane.api.openapi.spec import ok, operation, response
from control_plane.discovery.dns import resolution_status
from control_plane.keys import DNS_RESOLVER, EVENTS, PIPELINE, REGISTRY, SIDECAR, XDS_CACHE
from control_plane.model import Integration
from control_plane.xds.config_state import integration_config

__all__ = ["routes", "status_body"]

routes = web.RouteTableDef()


@routes.get("/integrations/{integration_id}/status")
@operation(
    "getIntegrationStatus",
    "health",
    "Configuration state",
    "Whether Envoy ACKed, is yet to answer, or NACKed (with its error text) the "
    "configuration carrying this integration; its listen port; enabled; and, for a host "
    "name the control plane resolves (vetted resolution), the addresses it serves and "
    "those it refused, with the SSRF rule.",
    {"200": ok("IntegrationStatus", "Status"), "404": response("NotFound")},
    params=["IntegrationId"],
)
async def status(request: web.Request) -> web.Response:
    return web.json_response(status_body(request.app, integration_of(request)))


def status_body(app: web.Application, item: Integration) -> dict[str, Any]:
    """The status body of one integration (the API's and the status page's)."""
    events = app.get(EVENTS)
    return {
        "id": item.id,
        "enabled": item.enabled,
        "listen_port": item.listen_port,
        "endpoint": endpoint_of(item),
        "registry_version": item.version,
        "source": item.source,
        # Vetted resolution: the name, the addresses served and refused (and why).
        "resolution": resolution_status(app.get(DNS_RESOLVER), item),
        "config": integration_config(
            app[XDS_CACHE],
            app[SIDECAR].node_id,
            item,
            app[PIPELINE].state,
        ),
        # Calls reported by other services' ``agent.executed`` events, per tenant.
        "usage": events.usage.for_integration(item.id) if events else {},
        # References whose values the credential policy keeps out of Envoy (a grant
        # narrowed or removed, a file outside the roots): reference and rule only.
        "credentials_withheld": {
            ref: {"rule": why.rule, "reason": why.message}
            for ref, why in sorted(app[REGISTRY].policy.withheld(item).items())
        },
    }
