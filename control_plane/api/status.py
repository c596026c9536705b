"""``GET /integrations/{id}/status``: what Envoy runs of the integration (the derivation
is ``control_plane.xds.config_state``) and the calls other services reported for it."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from control_plane.api.integrations import endpoint_of
from control_plane.api.lookup import integration_of
from control_plane.api.openapi.spec import ok, operation, response
from control_plane.discovery.dns import resolution_status
from control_plane.keys import (
    DNS_RESOLVER,
    EVENTS,
    FLEET,
    PIPELINE,
    REGISTRY,
    SIDECAR,
    TOKENS,
    XDS_CACHE,
)
from control_plane.model import Integration
from control_plane.tokens.broker import TokenBroker
from control_plane.xds.config_state import integration_config, integration_nodes

__all__ = ["routes", "status_body", "token_status"]

routes = web.RouteTableDef()


def token_status(broker: TokenBroker | None, integration_id: str) -> dict[str, Any] | None:
    return broker.status(integration_id) if broker is not None else None


@routes.get("/integrations/{integration_id}/status")
@operation(
    "getIntegrationStatus",
    "health",
    "Configuration state",
    "Whether Envoy ACKed, is yet to answer, or NACKed (with its error text) the "
    "configuration carrying this integration; its listen port; enabled; and, for a host "
    "name the control plane resolves (vetted resolution), the addresses it serves and "
    "those it refused, with the SSRF rule; in token mode, the brokered token's state "
    "(never the token).",
    {"200": ok("IntegrationStatus", "Status"), "404": response("NotFound")},
    params=["IntegrationId"],
)
async def status(request: web.Request) -> web.Response:
    return web.json_response(status_body(request.app, integration_of(request)))


def status_body(app: web.Application, item: Integration) -> dict[str, Any]:
    """The status body of one integration (the API's and the status page's)."""
    events = app.get(EVENTS)
    fleet = app.get(FLEET)
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
        # Shared topology: every node whose workload should run it, and what it runs.
        "fleet": None
        if fleet is None
        else integration_nodes(app[XDS_CACHE], item, fleet.workloads()),
        # Token mode: valid / refreshing / failing / expired, expiry, last refresh/error.
        "token": token_status(app.get(TOKENS), item.id),
        # Calls reported by other services' ``agent.executed`` events, per tenant.
        "usage": events.usage.for_integration(item.id) if events else {},
        # References whose values the credential policy keeps out of Envoy (a grant
        # narrowed or removed, a file outside the roots): reference and rule only.
        "credentials_withheld": {
            ref: {"rule": why.rule, "reason": why.message}
            for ref, why in sorted(app[REGISTRY].policy.withheld(item).items())
        },
    }
