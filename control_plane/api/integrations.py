"""``/integrations`` CRUD with ETags, If-Match, filters and pagination.

Credentials are returned as their references only (``env:NAME`` / ``file:/path``); the
control plane never resolves them for an API response.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, NamedTuple

from aiohttp import web

from control_plane.api.admission import admit_integration
from control_plane.api.body import json_body
from control_plane.api.caller import sees
from control_plane.api.lookup import integration_of
from control_plane.api.middleware import PreconditionFailed
from control_plane.api.openapi.spec import INTEGRATION_BODY, ok, operation, ref, response
from control_plane.api.problems import problem_response
from control_plane.api.query import bool_param, int_param
from control_plane.keys import PROBES, REGISTRY
from control_plane.model import Integration, to_document
from control_plane.observability.logging import REQUEST_ID

__all__ = ["endpoint_of", "etag_of", "integration_body", "routes"]

routes = web.RouteTableDef()

MAX_LIMIT = 500
# What a GET returns beside the document proper; ignored on input so that a GET body can be
# PUT back unchanged (the registry keeps its own values).
READ_ONLY = ("version", "source", "created_at", "updated_at", "endpoint")


def etag_of(item: Integration, document: dict[str, Any] | None = None) -> str:
    """Registered: the store's version. Declared: a digest of the document (``document``
    is ``to_document(item)`` when the caller already built it)."""
    if item.source == "registered":
        return f'"v{item.version}"'
    text = json.dumps(document or to_document(item), sort_keys=True)
    return f'"d-{hashlib.sha256(text.encode()).hexdigest()[:16]}"'


def endpoint_of(item: Integration) -> str:
    """Where the app points its client: the integration's loopback port on the sidecar."""
    if item.upstream.scheme in ("http", "https"):
        return f"http://127.0.0.1:{item.listen_port}"
    return f"127.0.0.1:{item.listen_port}"


def integration_body(item: Integration, document: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**(document or to_document(item)), "endpoint": endpoint_of(item)}


class Rendered(NamedTuple):
    """An integration as ``GET`` returns it: the JSON text of its body, and its ETag."""

    item: Integration
    body: str
    etag: str


# Rendered bodies by the identity of the (frozen) Integration they were made from: a
# registry view swaps in a new object for a changed integration, so an entry stays right
# for as long as its object lives (the entry holds it, so its id is not reused). Building
# and encoding 100 documents (``dataclasses.asdict``, deep copies, ``json.dumps``) was most
# of a ``GET /integrations`` page's CPU, repeated on every request (issue 20).
_RENDERED: dict[int, Rendered] = {}
_RENDERED_MAX = 10_000


def rendered(item: Integration) -> Rendered:
    hit = _RENDERED.get(id(item))
    if hit is not None and hit.item is item:
        return hit
    document = to_document(item)
    made = Rendered(item, json.dumps(integration_body(item, document)), etag_of(item, document))
    if len(_RENDERED) >= _RENDERED_MAX:
        del _RENDERED[next(iter(_RENDERED))]  # the oldest
    _RENDERED[id(item)] = made
    return made


def _json_text(text: str, *, headers: dict[str, str] | None = None) -> web.Response:
    """What :func:`_json` answers, for a body already encoded with ``json.dumps``."""
    return web.Response(text=text, content_type="application/json", headers=headers)


def _check_if_match(request: web.Request, item: Integration) -> int:
    """The version the write is based on; 412 when If-Match names another one."""
    header = request.headers.get("If-Match")
    if header is not None and header.strip() != "*":
        tags = [t.strip().removeprefix("W/") for t in header.split(",")]
        current = etag_of(item)
        if current not in tags:
            raise PreconditionFailed(
                f"If-Match {header} does not match the current version {current}; "
                "GET the integration again and retry with its ETag"
            )
    return item.version


async def _json_body(request: web.Request) -> Any:
    body = await json_body(request)
    if isinstance(body, dict):
        return {k: v for k, v in body.items() if k not in READ_ONLY}
    return body


def _json(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers)


@routes.get("/integrations")
@operation(
    "listIntegrations",
    "integrations",
    "List integrations",
    "Filters combine with AND. `next` is present while more pages follow.",
    {
        "200": ok("IntegrationList", "A page of integrations"),
        "400": response("BadRequest"),
    },
    params=["Kind", "Tenant", "Enabled", "Health", "Limit", "Offset"],
)
async def list_integrations(request: web.Request) -> web.Response:
    items = list(request.app[REGISTRY].view.items.values())
    kind = request.query.get("kind")
    tenant = request.query.get("tenant")
    enabled = bool_param(request, "enabled")
    health = request.query.get("health")
    if health is not None and health not in ("healthy", "unhealthy", "unknown"):
        raise web.HTTPBadRequest(
            reason="query parameter 'health' must be healthy, unhealthy or unknown"
        )
    probes = request.app[PROBES]
    items = [i for i in items if sees(request, i.tenant)]  # other tenants' do not exist
    if kind:
        items = [i for i in items if i.kind == kind]
    if tenant:
        items = [i for i in items if i.tenant == tenant]
    if enabled is not None:
        items = [i for i in items if i.enabled == enabled]
    if health is not None:
        items = [i for i in items if probes.state_of(i.id) == health]
    limit = int_param(request, "limit", 100, 1, MAX_LIMIT)
    offset = int_param(request, "offset", 0, 0, 10**9)
    page = items[offset : offset + limit]
    rest: dict[str, Any] = {"total": len(items), "limit": limit, "offset": offset}
    if offset + limit < len(items):
        query = dict(request.query)
        query.update({"offset": str(offset + limit), "limit": str(limit)})
        rest["next"] = str(request.rel_url.with_query(query))
    # Exactly json.dumps({"items": [...], **rest}), from the items' rendered bodies.
    items_text = ", ".join(rendered(i).body for i in page)
    return _json_text(f'{{"items": [{items_text}], {json.dumps(rest)[1:]}')


@routes.post("/integrations")
@operation(
    "createIntegration",
    "integrations",
    "Register an integration",
    "The listen port is assigned from the configured range when not given.",
    {
        "201": ok("Integration", "Registered", "ETag", "Location"),
        "400": response("BadRequest"),
        "409": response("Conflict"),
        "413": response("ContentTooLarge"),
        "415": response("UnsupportedMediaType"),
        "422": response("ValidationFailed"),
        "503": response("StoreUnavailable"),
    },
    body=INTEGRATION_BODY,
)
async def create_integration(request: web.Request) -> web.Response:
    document = await _json_body(request)
    if not isinstance(document, dict):
        return problem_response(422, "the body must be a JSON object (an integration document)")
    admitted = await admit_integration(request, document)  # tenant, validation, SSRF guard
    item = await request.app[REGISTRY].create(admitted, correlation_id=REQUEST_ID.get())
    location = f"/integrations/{item.id}"
    return _json(
        integration_body(item), status=201, headers={"Location": location, "ETag": etag_of(item)}
    )


@routes.get("/integrations/{integration_id}")
@operation(
    "getIntegration",
    "integrations",
    "Get an integration",
    "Credentials are shown as their references, never resolved.",
    {
        "200": ok("Integration", "The integration", "ETag"),
        "304": {
            "description": "Not modified (If-None-Match matched)",
            "headers": {"ETag": ref("headers", "ETag")},
        },
        "404": response("NotFound"),
    },
    params=["IntegrationId", "IfNoneMatch"],
)
async def get_integration(request: web.Request) -> web.StreamResponse:
    item = rendered(integration_of(request))  # the ETag of a declared one digests it
    tag = item.etag
    if tag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
        return web.Response(status=304, headers={"ETag": tag})
    return _json_text(item.body, headers={"ETag": tag})


@routes.put("/integrations/{integration_id}")
@operation(
    "updateIntegration",
    "integrations",
    "Replace an integration",
    "Registered integrations only; the id cannot change. The listen port is kept "
    "unless the body names another one.",
    {
        "200": ok("Integration", "Updated", "ETag"),
        "400": response("BadRequest"),
        "404": response("NotFound"),
        "409": response("Conflict"),
        "412": response("PreconditionFailed"),
        "413": response("ContentTooLarge"),
        "415": response("UnsupportedMediaType"),
        "422": response("ValidationFailed"),
        "503": response("StoreUnavailable"),
    },
    params=["IntegrationId", "IfMatch"],
    body=INTEGRATION_BODY,
)
async def update_integration(request: web.Request) -> web.Response:
    item = integration_of(request)
    version = _check_if_match(request, item)
    document = await _json_body(request)
    if not isinstance(document, dict):
        return problem_response(422, "the body must be a JSON object (an integration document)")
    if document.get("id", item.id) != item.id:
        return problem_response(
            422, "the id in the body differs from the URL; ids cannot be changed (create a new one)"
        )
    admitted = await admit_integration(request, document, current=item)
    updated = await request.app[REGISTRY].update(
        item.id, admitted, version, correlation_id=REQUEST_ID.get()
    )
    return _json(integration_body(updated), headers={"ETag": etag_of(updated)})


@routes.delete("/integrations/{integration_id}")
@operation(
    "deleteIntegration",
    "integrations",
    "Deregister an integration",
    "Registered integrations only; Envoy drops its listener and cluster.",
    {
        "204": {"description": "Deregistered"},
        "404": response("NotFound"),
        "409": response("Conflict"),
        "412": response("PreconditionFailed"),
        "503": response("StoreUnavailable"),
    },
    params=["IntegrationId", "IfMatch"],
)
async def delete_integration(request: web.Request) -> web.Response:
    item = integration_of(request)
    version = _check_if_match(request, item)
    await request.app[REGISTRY].delete(item.id, version, correlation_id=REQUEST_ID.get())
    return web.Response(status=204)
