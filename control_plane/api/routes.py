"""Every route table of the management API, in one list: the wiring adds them to the app
and the OpenAPI document is generated from them (each handler carries its operation)."""

from __future__ import annotations

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
)
from control_plane.api.openapi import document

__all__ = ["ROUTE_TABLES"]

ROUTE_TABLES: tuple[web.RouteTableDef, ...] = (
    health.routes,
    integrations.routes,
    status.routes,
    probing.routes,
    rate_limit.routes,
    cache.routes,
    circuit_breaker.routes,
    metrics.routes,
    document.routes,
    api_keys.routes,
    audit.routes,
)
