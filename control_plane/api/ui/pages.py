"""The status page's HTTP surface: the public shell and its static files, and the
authenticated fragments (overview table, integration detail) the shell loads into itself.

The shell holds no data, so it is public; every fragment goes through the security
middleware exactly like the API (viewer role, tenant scope: another tenant's integration
answers 404). Templates are Jinja2 with autoescaping on, so every registry string —
descriptions, Envoy's NACK text, probe details — is rendered as text.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from aiohttp import web

from control_plane.api.cache import cache_body
from control_plane.api.caller import principal_of, sees
from control_plane.api.circuit_breaker import breaker_view
from control_plane.api.integrations import integration_body
from control_plane.api.lookup import integration_of
from control_plane.api.openapi.spec import Json, operation, response
from control_plane.api.probing import health_body
from control_plane.api.rate_limit import rate_limit_view
from control_plane.api.status import status_body
from control_plane.api.ui.renderer import TEMPLATES
from control_plane.api.ui.rows import Row
from control_plane.keys import EVENTS, PIPELINE, RATE_SAMPLES, SECURITY, SIDECAR, UI_FEED
from control_plane.model import Integration
from control_plane.security.authz import rule_for
from control_plane.sidecar.admin import EnvoyAdminError

__all__ = ["ACTIONS", "Overview", "render_row", "routes"]

routes = web.RouteTableDef()

# How old the shared production may be when a page asks for the overview.
FRESH_S = 2.0

# The operator actions of the detail page: (label, method, path template, needs cache).
ACTIONS = (
    ("Run test", "POST", "/integrations/{integration_id}/test", False),
    ("Clear cache", "POST", "/integrations/{integration_id}/cache/clear", True),
    ("Reset breaker", "POST", "/integrations/{integration_id}/circuit-breaker/reset", False),
)

_STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


_STRING: Json = {"type": "string"}


def _html(description: str, *types: str) -> Json:
    """A response whose body is text of ``types`` (HTML by default), for the OpenAPI."""
    return {
        "description": description,
        "content": {t: {"schema": _STRING} for t in types or ("text/html",)},
    }


@dataclass(frozen=True, slots=True)
class Overview:
    """One production of the live feed: every row and its rendered ``<tr>``."""

    rows: dict[str, Row]
    html: dict[str, str]


def render_row(app: web.Application, row: Row) -> str:
    """One ``<tr>``, rendered once per change and shared by every page that shows it."""
    return app[TEMPLATES].render("row.html", {"row": row})


@routes.get("/ui")
@operation(
    "getStatusPage",
    "ui",
    "Status page",
    "The status page's shell (public: it holds no data). It signs in with an API key or "
    "a JWT kept in sessionStorage and loads the fragments below with that header.",
    {"200": _html("The page")},
)
async def shell(request: web.Request) -> web.Response:
    assets = {name: f"/ui/static/{name}?v={_static(name)[1]}" for name in _asset_names()}
    security = request.app.get(SECURITY)
    auth = "required" if security is not None and security.enabled else "disabled"
    # The fragments this shell loads next need the overview: the first shell served starts
    # the first production (it compiles the templates and renders every row), once.
    request.app[UI_FEED].warm()
    return request.app[TEMPLATES].response("index.html", {"assets": assets, "auth": auth})


def _asset_names() -> tuple[str, ...]:
    return ("htmx.min.js", "app.js", "app.css", "favicon.svg")


@routes.get("/ui/static/{name}")
@operation(
    "getStatusPageAsset",
    "ui",
    "Status page asset",
    "The page's script, style sheet and the vendored htmx (see the NOTICE beside them).",
    {
        "200": _html("The file", *sorted(set(_STATIC_TYPES.values()))),
        "404": response("NotFound"),
    },
    parameters=[{"name": "name", "in": "path", "required": True, "schema": _STRING}],
)
async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in _asset_names():
        raise web.HTTPNotFound(reason=f"no asset {name[:64]!r}")
    body, digest = _static(name)
    return web.Response(
        body=body,
        content_type=_STATIC_TYPES[name[name.rfind(".") :]],
        headers={"Cache-Control": "public, max-age=86400", "ETag": f'"{digest}"'},
    )


_STATIC_CACHE: dict[str, tuple[bytes, str]] = {}


def _static(name: str) -> tuple[bytes, str]:
    found = _STATIC_CACHE.get(name)
    if found is None:
        body = resources.files("control_plane.api.ui").joinpath("static", name).read_bytes()
        found = _STATIC_CACHE[name] = (body, hashlib.sha256(body).hexdigest()[:16])
    return found


async def overview_of(app: web.Application) -> tuple[Overview, int]:
    feed = app[UI_FEED]
    overview = await feed.current(FRESH_S)
    assert isinstance(overview, Overview)
    return overview, feed.version


def visible(request: web.Request, overview: Overview) -> list[Row]:
    return [row for row in overview.rows.values() if sees(request, row.tenant)]


@routes.get("/ui/fragments/overview")
@operation(
    "getStatusOverview",
    "ui",
    "Status page: the overview table",
    "One row per integration the caller may see (other tenants' are absent), problems "
    "first. `data-version` names the live-feed production it shows, for `/ui/stream`.",
    {"200": _html("The table")},
)
async def overview(request: web.Request) -> web.Response:
    data, version = await overview_of(request.app)
    rows = visible(request, data)
    principal = principal_of(request)
    context = {
        "rows": [data.html[r.id] for r in rows],
        "version": version,
        "count": len(rows),
        "principal_id": principal.id if principal else "anonymous",
        "role": principal.role if principal else "admin",
        "tenant": principal.tenant if principal else "*",
    }
    return request.app[TEMPLATES].response("overview.html", context)


def allowed_actions(request: web.Request, item: Integration) -> list[dict[str, str]]:
    """The actions the caller's role allows, by the API's own permission matrix."""
    principal = principal_of(request)
    out = []
    for label, method, template, needs_cache in ACTIONS:
        rule = rule_for(method, template)
        if principal is not None and (rule.role is None or not principal.has_role(rule.role)):
            continue
        if needs_cache and not item.policies.cache.enabled:
            continue
        path = template.replace("{integration_id}", item.id)
        out.append({"label": label, "method": method, "path": path})
    return out


async def _traffic(app: web.Application, item: Integration) -> dict[str, Any] | None:
    """The breaker and rate-limit bodies from one read of Envoy, or None when unreachable."""
    try:
        async with app[SIDECAR].admin(timeout=2.0) as admin:
            clusters, stats = await admin.clusters(), await admin.stats()
    except EnvoyAdminError:
        return None
    generation = app[PIPELINE].cluster_generation(item.id)
    return {
        "breaker": breaker_view(item, clusters, stats, generation),
        "rate_limit": rate_limit_view(item, stats, app[RATE_SAMPLES]),
    }


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


@routes.get("/ui/fragments/integrations/{integration_id}")
@operation(
    "getStatusDetail",
    "ui",
    "Status page: one integration",
    "The normalized definition (credential references, never values), status, health, "
    "circuit breaker, rate limit, cache, recent events, and the operator actions the "
    "caller's role allows.",
    {"200": _html("The detail"), "404": response("NotFound")},
    params=["IntegrationId"],
)
async def detail(request: web.Request) -> web.Response:
    item = integration_of(request)
    app = request.app
    traffic = await _traffic(app, item)
    events = app.get(EVENTS)
    sections = {
        "Status": status_body(app, item),
        "Health": await health_body(app, item),
        "Circuit breaker": traffic["breaker"] if traffic else None,
        "Rate limit": traffic["rate_limit"] if traffic else None,
        "Cache": await cache_body(app, item),
    }
    data, version = await overview_of(app)
    context = {
        "item": item,
        "version": version,
        "row_html": data.html.get(item.id),
        "definition": _pretty(integration_body(item)),
        "sections": {k: None if v is None else _pretty(v) for k, v in sections.items()},
        "events": events.recent.for_integration(item.id) if events else [],
        "actions": allowed_actions(request, item),
        "pretty": _pretty,
    }
    return request.app[TEMPLATES].response("detail.html", context)
