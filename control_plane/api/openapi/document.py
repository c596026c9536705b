"""The OpenAPI 3.1 document of the management API, built from the route tables.

It is the source for ``docs/api.md`` (``python -m control_plane.api.openapi --markdown``)
and for the schemathesis run in the test suite; a unit test checks that it names every
route the app registers and nothing else. Built on first use, never at import time.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

from aiohttp import web

from control_plane.api.openapi.schemas import component_schemas
from control_plane.api.openapi.security import add_security
from control_plane.api.openapi.spec import Json, problem, ref, spec_of
from control_plane.model import KINDS

__all__ = ["build_document"]


_RESPONSES: Json = {
    "BadRequest": problem("A query parameter or the JSON body is malformed"),
    "NotFound": problem("No integration has this id"),
    "Conflict": problem(
        "The id is taken, the integration is declared in the integrations file "
        "(edit the file instead), or the operation does not apply to it"
    ),
    "PreconditionFailed": problem("If-Match names a version that is no longer current"),
    "UnsupportedMediaType": problem("The body is not application/json"),
    "ContentTooLarge": problem("The body is larger than 1 MiB"),
    "ValidationFailed": problem(
        "The document is invalid; errors lists every problem with its JSON pointer"
    ),
    "StoreUnavailable": problem(
        "The registry store is unreachable; nothing was changed", "Retry-After"
    ),
    "EnvoyUnavailable": problem(
        "Envoy's admin API is unreachable, so live counters cannot be read", "Retry-After"
    ),
}

_HEADERS: Json = {
    "X-Request-ID": {
        "description": "The request's X-Request-ID, or one generated for it",
        "required": True,
        "schema": {"type": "string"},
    },
    "traceparent": {
        "description": "W3C trace context: the caller's trace id with a new span id",
        "schema": {"type": "string"},
    },
    "ETag": {
        "description": 'The integration\'s version: "v<N>" for registered, "d-<hash>" for '
        "declared integrations",
        "required": True,
        "schema": {"type": "string"},
    },
    "Location": {
        "description": "URL of the created integration",
        "required": True,
        "schema": {"type": "string"},
    },
    "Retry-After": {
        "description": "Seconds to wait before retrying",
        "schema": {"type": "string"},
    },
}

_PARAMETERS: Json = {
    "IntegrationId": {
        "name": "integration_id",
        "in": "path",
        "required": True,
        "description": "The integration id (a DNS label)",
        "schema": {"type": "string", "pattern": r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"},
        "example": "stripe",
    },
    "XRequestId": {
        "name": "X-Request-ID",
        "in": "header",
        "description": "Correlation id carried into logs and events; generated when absent "
        "or not matching ^[A-Za-z0-9._:-]{1,128}$",
        "schema": {"type": "string", "pattern": r"^[A-Za-z0-9._:-]{1,128}$"},
    },
    "Traceparent": {
        "name": "traceparent",
        "in": "header",
        "description": "W3C trace context; its trace id appears in every log line of the request",
        "schema": {"type": "string", "pattern": r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"},
    },
    "IfMatch": {
        "name": "If-Match",
        "in": "header",
        "description": "Write only if the integration still has this ETag (or *); else 412",
        "schema": {"type": "string"},
    },
    "IfNoneMatch": {
        "name": "If-None-Match",
        "in": "header",
        "description": "Answer 304 without a body if the ETag still matches",
        "schema": {"type": "string"},
    },
    "Kind": {
        "name": "kind",
        "in": "query",
        "description": "Only integrations of this kind (" + ", ".join(KINDS) + ")",
        "schema": {"type": "string"},
    },
    "Tenant": {
        "name": "tenant",
        "in": "query",
        "description": "Only integrations of this tenant",
        "schema": {"type": "string"},
    },
    "Enabled": {
        "name": "enabled",
        "in": "query",
        "description": "Only enabled (true) or disabled (false) integrations",
        "schema": {"type": "boolean"},
    },
    "Health": {
        "name": "health",
        "in": "query",
        "description": "Only integrations whose last probe has this outcome",
        "schema": {"enum": ["healthy", "unhealthy", "unknown"]},
    },
    "Limit": {
        "name": "limit",
        "in": "query",
        "description": "Page size",
        "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100},
    },
    "Offset": {
        "name": "offset",
        "in": "query",
        "description": "Items to skip",
        "schema": {"type": "integer", "minimum": 0, "maximum": 1000000000, "default": 0},
    },
}


def _paths(tables: Iterable[web.RouteTableDef]) -> Json:
    paths: Json = {}
    for table in tables:
        for route in table:
            if not isinstance(route, web.RouteDef):
                continue
            spec = spec_of(route.handler)
            if spec is None:
                raise ValueError(
                    f"{route.method} {route.path}: handler {route.handler.__qualname__} has no "
                    "@operation (control_plane.api.openapi.spec); add one beside its route"
                )
            paths.setdefault(route.path, {})[route.method.lower()] = spec
    return paths


def _with_request_id_header(paths: Json) -> Json:
    """Every response carries X-Request-ID (and traceparent when one was sent)."""
    for item in paths.values():
        for operation in item.values():
            for response in operation["responses"].values():
                if "$ref" not in response:
                    headers = response.setdefault("headers", {})
                    headers.setdefault("X-Request-ID", ref("headers", "X-Request-ID"))
                    headers.setdefault("traceparent", ref("headers", "traceparent"))
    return paths


def build_document(tables: Iterable[web.RouteTableDef]) -> Json:
    """The whole document: one operation per routed handler, plus the components."""
    responses = copy.deepcopy(_RESPONSES)
    for response in responses.values():
        response.setdefault("headers", {})
        response["headers"]["X-Request-ID"] = ref("headers", "X-Request-ID")
        response["headers"]["traceparent"] = ref("headers", "traceparent")
    document: Json = {
        "openapi": "3.1.0",
        "info": {
            "title": "Integration Service management API",
            "version": "1.0.0",
            "summary": "Registry, status and operations of the integrations behind the sidecar",
            "description": "Errors are RFC 9457 `application/problem+json`. Every response "
            "echoes `X-Request-ID`. See docs/api.md for the semantics.",
        },
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "tags": [
            {"name": "integrations", "description": "The integration registry"},
            {"name": "health", "description": "Per-integration configuration state and health"},
            {"name": "traffic", "description": "Rate limits, cache, circuit breaker"},
            {"name": "service", "description": "The service itself"},
        ],
        "paths": _with_request_id_header(_paths(tables)),
        "components": {
            "schemas": component_schemas(),
            "responses": responses,
            "parameters": copy.deepcopy(_PARAMETERS),
            "headers": copy.deepcopy(_HEADERS),
        },
    }
    return add_security(document)  # auth schemes, /api-keys, /audit, 401/403/429
