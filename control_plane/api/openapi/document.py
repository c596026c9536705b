"""The OpenAPI 3.1 document of the management API, served at ``GET /openapi.json``.

It is the source for ``docs/api.md`` (``python -m control_plane.api.openapi --markdown``)
and for the schemathesis run in the test suite; a unit test checks that it names every
route the app registers and nothing else. Built on first use, never at import time.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from control_plane.api.openapi.schemas import component_schemas
from control_plane.api.openapi.security import add_security
from control_plane.model import KINDS

__all__ = ["main", "openapi_document", "routes"]

Json = dict[str, Any]

routes = web.RouteTableDef()

PROBLEM_JSON = "application/problem+json"
DEFAULT_TEMPLATE = Path(__file__).resolve().parents[3] / "docs" / "api.template.md"


def _ref(kind: str, name: str) -> Json:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json_body(schema: str, description: str, *headers: str) -> Json:
    response: Json = {
        "description": description,
        "content": {"application/json": {"schema": _ref("schemas", schema)}},
    }
    if headers:
        response["headers"] = {h: _ref("headers", h) for h in headers}
    return response


def _problem(description: str, *headers: str) -> Json:
    response: Json = {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": _ref("schemas", "Problem")}},
    }
    if headers:
        response["headers"] = {h: _ref("headers", h) for h in headers}
    return response


_RESPONSES: Json = {
    "BadRequest": _problem("A query parameter or the JSON body is malformed"),
    "NotFound": _problem("No integration has this id"),
    "Conflict": _problem(
        "The id is taken, the integration is declared in the integrations file "
        "(edit the file instead), or the operation does not apply to it"
    ),
    "PreconditionFailed": _problem("If-Match names a version that is no longer current"),
    "UnsupportedMediaType": _problem("The body is not application/json"),
    "ValidationFailed": _problem(
        "The document is invalid; errors lists every problem with its JSON pointer"
    ),
    "StoreUnavailable": _problem(
        "The registry store is unreachable; nothing was changed", "Retry-After"
    ),
    "EnvoyUnavailable": _problem(
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

_BODY: Json = {
    "required": True,
    "content": {"application/json": {"schema": _ref("schemas", "IntegrationInput")}},
}


def _operation(
    op_id: str,
    tag: str,
    summary: str,
    description: str,
    responses: Json,
    *,
    params: Sequence[str] = (),
    body: bool = False,
) -> Json:
    operation: Json = {
        "operationId": op_id,
        "tags": [tag],
        "summary": summary,
        "description": description,
        "parameters": [_ref("parameters", p) for p in (*params, "XRequestId", "Traceparent")],
        "responses": responses,
    }
    if body:
        operation["requestBody"] = _BODY
    return operation


def _r(name: str) -> Json:
    return _ref("responses", name)


def _paths() -> Json:
    one = ["IntegrationId"]
    return {
        "/integrations": {
            "get": _operation(
                "listIntegrations",
                "integrations",
                "List integrations",
                "Filters combine with AND. `next` is present while more pages follow.",
                {
                    "200": _json_body("IntegrationList", "A page of integrations"),
                    "400": _r("BadRequest"),
                },
                params=["Kind", "Tenant", "Enabled", "Health", "Limit", "Offset"],
            ),
            "post": _operation(
                "createIntegration",
                "integrations",
                "Register an integration",
                "The listen port is assigned from the configured range when not given.",
                {
                    "201": _json_body("Integration", "Registered", "ETag", "Location"),
                    "400": _r("BadRequest"),
                    "409": _r("Conflict"),
                    "415": _r("UnsupportedMediaType"),
                    "422": _r("ValidationFailed"),
                    "503": _r("StoreUnavailable"),
                },
                body=True,
            ),
        },
        "/integrations/{integration_id}": {
            "get": _operation(
                "getIntegration",
                "integrations",
                "Get an integration",
                "Credentials are shown as their references, never resolved.",
                {
                    "200": _json_body("Integration", "The integration", "ETag"),
                    "304": {
                        "description": "Not modified (If-None-Match matched)",
                        "headers": {"ETag": _ref("headers", "ETag")},
                    },
                    "404": _r("NotFound"),
                },
                params=[*one, "IfNoneMatch"],
            ),
            "put": _operation(
                "updateIntegration",
                "integrations",
                "Replace an integration",
                "Registered integrations only; the id cannot change. The listen port is kept "
                "unless the body names another one.",
                {
                    "200": _json_body("Integration", "Updated", "ETag"),
                    "400": _r("BadRequest"),
                    "404": _r("NotFound"),
                    "409": _r("Conflict"),
                    "412": _r("PreconditionFailed"),
                    "415": _r("UnsupportedMediaType"),
                    "422": _r("ValidationFailed"),
                    "503": _r("StoreUnavailable"),
                },
                params=[*one, "IfMatch"],
                body=True,
            ),
            "delete": _operation(
                "deleteIntegration",
                "integrations",
                "Deregister an integration",
                "Registered integrations only; Envoy drops its listener and cluster.",
                {
                    "204": {"description": "Deregistered"},
                    "404": _r("NotFound"),
                    "409": _r("Conflict"),
                    "412": _r("PreconditionFailed"),
                    "503": _r("StoreUnavailable"),
                },
                params=[*one, "IfMatch"],
            ),
        },
        "/integrations/{integration_id}/status": {
            "get": _operation(
                "getIntegrationStatus",
                "health",
                "Configuration state",
                "Whether Envoy ACKed, is yet to answer, or NACKed (with its error text) the "
                "configuration carrying this integration; its listen port; enabled.",
                {"200": _json_body("IntegrationStatus", "Status"), "404": _r("NotFound")},
                params=one,
            ),
        },
        "/integrations/{integration_id}/health": {
            "get": _operation(
                "getIntegrationHealth",
                "health",
                "Last probe and Envoy's view",
                "The last probe result and, from Envoy's admin API, host health flags and "
                "outlier-detection state. `envoy.reachable` is false while Envoy is down.",
                {"200": _json_body("IntegrationHealth", "Health"), "404": _r("NotFound")},
                params=one,
            ),
        },
        "/integrations/{integration_id}/test": {
            "post": _operation(
                "testIntegration",
                "health",
                "Probe the integration now",
                "Runs the kind's probe once, through the sidecar, with its real client "
                "library; the result also feeds /health and the health filter of the list.",
                {
                    "200": _json_body("IntegrationProbe", "The probe ran; `ok` says how it went"),
                    "404": _r("NotFound"),
                    "409": _problem("The integration is disabled: there is no listener to probe"),
                },
                params=one,
            ),
        },
        "/integrations/{integration_id}/rate-limit": {
            "get": _operation(
                "getRateLimit",
                "traffic",
                "Rate-limit buckets and counters",
                "Configured token buckets; allowed and limited counts from Envoy's "
                "`<id>.http_local_rate_limit.*` stats; the limited rate over the last minute.",
                {
                    "200": _json_body("RateLimit", "Rate limit"),
                    "404": _r("NotFound"),
                    "503": _r("EnvoyUnavailable"),
                },
                params=one,
            ),
        },
        "/integrations/{integration_id}/cache": {
            "get": _operation(
                "getCache",
                "traffic",
                "Response-cache statistics",
                "Hits and misses of this integration, entries and bytes of its cache path.",
                {
                    "200": _json_body("CacheStats", "Cache statistics"),
                    "404": _r("NotFound"),
                    "503": _r("EnvoyUnavailable"),
                },
                params=one,
            ),
        },
        "/integrations/{integration_id}/cache/clear": {
            "post": _operation(
                "clearCache",
                "traffic",
                "Empty the response cache",
                "Rotates the integration's cache path; the old directory is removed.",
                {
                    "200": _json_body("CacheCleared", "Cleared"),
                    "404": _r("NotFound"),
                    "409": _r("Conflict"),
                    "503": _problem("The new cache path could not be pushed", "Retry-After"),
                },
                params=one,
            ),
        },
        "/integrations/{integration_id}/circuit-breaker": {
            "get": _operation(
                "getCircuitBreaker",
                "traffic",
                "Circuit-breaker and outlier-detection state",
                "Thresholds, Envoy's `*_open` and `remaining_*` gauges, ejections and the "
                "derived state closed | open | half_open.",
                {
                    "200": _json_body("CircuitBreaker", "Circuit breaker"),
                    "404": _r("NotFound"),
                    "503": _r("EnvoyUnavailable"),
                },
                params=one,
            ),
        },
        "/integrations/{integration_id}/circuit-breaker/reset": {
            "post": _operation(
                "resetCircuitBreaker",
                "traffic",
                "Reset the circuit breaker",
                "Bumps the cluster generation so Envoy rebuilds the cluster with no ejections.",
                {
                    "200": _json_body("CircuitBreakerReset", "Reset and ACKed by Envoy"),
                    "202": _json_body("CircuitBreakerReset", "Reset pushed, not yet ACKed"),
                    "404": _r("NotFound"),
                    "409": _r("Conflict"),
                    "503": _problem("The new configuration could not be built", "Retry-After"),
                },
                params=one,
            ),
        },
        "/health": {
            "get": _operation(
                "getServiceHealth",
                "service",
                "Service health",
                "Every readiness check, named; `degraded` when any fails (still 200).",
                {"200": _json_body("ServiceHealth", "Health")},
            ),
        },
        "/health/live": {
            "get": _operation(
                "getLiveness",
                "service",
                "Liveness",
                "Answers while the event loop is responsive, with the lag it measured.",
                {"200": _json_body("Liveness", "Live")},
            ),
        },
        "/health/ready": {
            "get": _operation(
                "getReadiness",
                "service",
                "Readiness",
                "Store reachable, Envoy ready, and Envoy ACKed the current version.",
                {
                    "200": _json_body("Readiness", "Ready"),
                    "503": _json_body("Readiness", "Not ready; the failing checks say why"),
                },
            ),
        },
        "/metrics": {
            "get": _operation(
                "getMetrics",
                "service",
                "Prometheus metrics",
                "Prometheus text format; OpenMetrics when the Accept header asks for it.",
                {
                    "200": {
                        "description": "Metrics",
                        "content": {
                            "text/plain": {"schema": {"type": "string"}},
                            "application/openmetrics-text": {"schema": {"type": "string"}},
                        },
                    }
                },
            ),
        },
        "/openapi.json": {
            "get": _operation(
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
            ),
        },
    }


def _with_request_id_header(paths: Json) -> Json:
    """Every response carries X-Request-ID (and traceparent when one was sent)."""
    for item in paths.values():
        for operation in item.values():
            for response in operation["responses"].values():
                if "$ref" not in response:
                    headers = response.setdefault("headers", {})
                    headers.setdefault("X-Request-ID", _ref("headers", "X-Request-ID"))
                    headers.setdefault("traceparent", _ref("headers", "traceparent"))
    return paths


@functools.cache
def _document() -> Json:
    responses = copy.deepcopy(_RESPONSES)
    for response in responses.values():
        response.setdefault("headers", {})
        response["headers"]["X-Request-ID"] = _ref("headers", "X-Request-ID")
        response["headers"]["traceparent"] = _ref("headers", "traceparent")
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
        "paths": _with_request_id_header(_paths()),
        "components": {
            "schemas": component_schemas(),
            "responses": responses,
            "parameters": copy.deepcopy(_PARAMETERS),
            "headers": copy.deepcopy(_HEADERS),
        },
    }
    return add_security(document)  # auth schemes, /api-keys, /audit, 401/403/429


def openapi_document() -> Json:
    """A fresh copy of the document (callers may mutate it)."""
    return copy.deepcopy(_document())


@routes.get("/openapi.json")
async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(
        text=_serialized(), content_type="application/json", headers={"Cache-Control": "no-cache"}
    )


@functools.cache
def _serialized() -> str:
    return json.dumps(_document(), sort_keys=False)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m control_plane.api.openapi",
        description="Print the OpenAPI document, or docs/api.md generated from it.",
    )
    parser.add_argument("--markdown", action="store_true", help="print docs/api.md")
    parser.add_argument(
        "--template", type=Path, default=DEFAULT_TEMPLATE, help="hand-written sections"
    )
    args = parser.parse_args(argv)
    if args.markdown:
        from control_plane.api.openapi.markdown import render_markdown

        template = args.template.read_text(encoding="utf-8")
        sys.stdout.write(render_markdown(openapi_document(), template))
    else:
        sys.stdout.write(json.dumps(openapi_document(), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
