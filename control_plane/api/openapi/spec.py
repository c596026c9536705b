"""Operation specs that the handlers carry: ``@operation(...)`` under the route decorator.

The OpenAPI document is generated from the route tables (``control_plane.api.routes``):
each route's handler names its operation here, and the response bodies it references by
name are the component schemas of ``control_plane.api.openapi.schemas``. A new endpoint is
one handler with its ``@operation`` and, when it returns a new shape, its schema; the
document refuses to build while any routed handler has no operation.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from aiohttp import web

__all__ = [
    "COMMON_PARAMETERS",
    "INTEGRATION_BODY",
    "Json",
    "envoy_read",
    "ok",
    "operation",
    "problem",
    "query",
    "ref",
    "response",
    "spec_of",
]

Json = dict[str, Any]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)

PROBLEM_JSON = "application/problem+json"
# Parameters every operation accepts (components/parameters).
COMMON_PARAMETERS = ("XRequestId", "Traceparent")

_SPECS: dict[Callable[..., Any], Json] = {}


def ref(kind: str, name: str) -> Json:
    return {"$ref": f"#/components/{kind}/{name}"}


def response(name: str) -> Json:
    """A shared response of components/responses (NotFound, Conflict, ...)."""
    return ref("responses", name)


def _with_headers(body: Json, headers: Sequence[str]) -> Json:
    if headers:
        body["headers"] = {h: ref("headers", h) for h in headers}
    return body


def ok(schema: str, description: str, *headers: str) -> Json:
    """A JSON response whose body is the component schema ``schema``."""
    body: Json = {
        "description": description,
        "content": {"application/json": {"schema": ref("schemas", schema)}},
    }
    return _with_headers(body, headers)


def problem(description: str, *headers: str) -> Json:
    """An RFC 9457 problem response."""
    body: Json = {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": ref("schemas", "Problem")}},
    }
    return _with_headers(body, headers)


def envoy_read(schema: str, description: str) -> Json:
    """The answers of a per-integration read of Envoy's admin API: the body, an unknown
    id, or Envoy unreachable."""
    return {
        "200": ok(schema, description),
        "404": response("NotFound"),
        "503": response("EnvoyUnavailable"),
    }


def query(name: str, description: str, schema: Json) -> Json:
    return {"name": name, "in": "query", "description": description, "schema": schema}


INTEGRATION_BODY: Json = {
    "required": True,
    "content": {"application/json": {"schema": ref("schemas", "IntegrationInput")}},
}


def operation(
    op_id: str,
    tag: str,
    summary: str,
    description: str,
    responses: Json,
    *,
    params: Sequence[str] = (),
    parameters: Sequence[Json] = (),
    body: Json | None = None,
) -> Callable[[H], H]:
    """Attach the OpenAPI operation to a handler. ``params`` name components/parameters;
    ``parameters`` are inline ones; ``body`` is the request body."""
    spec: Json = {
        "operationId": op_id,
        "tags": [tag],
        "summary": summary,
        "description": description,
        "parameters": [
            *(ref("parameters", p) for p in params),
            *parameters,
            *(ref("parameters", p) for p in COMMON_PARAMETERS),
        ],
        "responses": responses,
    }
    if body is not None:
        spec["requestBody"] = body

    def attach(handler: H) -> H:
        _SPECS[handler] = spec
        return handler

    return attach


def spec_of(handler: Callable[..., Any]) -> Json | None:
    """A copy of the handler's operation, or None when it has none."""
    spec = _SPECS.get(handler)
    return None if spec is None else copy.deepcopy(spec)
