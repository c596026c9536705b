"""Every route table of the management API, in one list: the wiring adds them to the app
and the OpenAPI document is generated from them (each handler carries its operation)."""

from __future__ import annotations

import copy
import functools
import json

from aiohttp import web

from control_plane.api import (
    api_keys,
    audit,
    cache,
    circuit_breaker,
    health,
    integrations,
    metrics,
    probing,
    rate_limit,
    status,
    ui,
)
from control_plane.api.openapi.spec import Json, operation

__all__ = ["ROUTE_TABLES", "openapi_document"]

routes = web.RouteTableDef()


@routes.get("/openapi.json")
@operation(
    "getOpenApi",
    "service",
    "This document",
    "The OpenAPI 3.1 description of this API.",
    {
        "200": {
            "description": "The OpenAPI document",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(
        text=_serialized(), content_type="application/json", headers={"Cache-Control": "no-cache"}
    )


@functools.cache
def _serialized() -> str:
    return json.dumps(_document(), sort_keys=False)


@functools.cache
def _document() -> Json:
    # The builder and the component schemas load with the first request for the document.
    from control_plane.api.openapi.document import build_document

    return build_document(ROUTE_TABLES)


def openapi_document() -> Json:
    """A fresh copy of the document (callers may mutate it); built on first use."""
    return copy.deepcopy(_document())


ROUTE_TABLES: tuple[web.RouteTableDef, ...] = (
    integrations.routes,
    status.routes,
    probing.routes,
    rate_limit.routes,
    cache.routes,
    circuit_breaker.routes,
    health.routes,
    metrics.routes,
    routes,
    api_keys.routes,
    audit.routes,
    *ui.ROUTES,
)
