"""``GET /audit``: the audit log, newest first, tenant-scoped (``security.audit`` writes it)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from aiohttp import web

from control_plane.api.caller import principal_of
from control_plane.api.openapi.spec import ok, operation, problem, query
from control_plane.api.query import int_param
from control_plane.keys import STORE
from control_plane.security.audit import audit_body
from control_plane.security.context import SecurityProblem
from control_plane.store.protocol import AuditQuery

__all__ = ["routes"]

routes = web.RouteTableDef()
MAX_LIMIT = 500

AUDIT_PARAMETERS = [
    query("principal", "Only entries by this principal id", {"type": "string"}),
    query("tenant", "Only entries of this tenant (global admins)", {"type": "string"}),
    query("action", "Only this action, e.g. integration.update", {"type": "string"}),
    query("target", "Only this target, e.g. integration/stripe", {"type": "string"}),
    query("since", "Entries at or after this time", {"type": "string", "format": "date-time"}),
    query("until", "Entries before this time", {"type": "string", "format": "date-time"}),
    query("before_id", "Page: entries older than this id", {"type": "integer", "minimum": 1}),
    query("limit", "Page size", {"type": "integer", "minimum": 1, "maximum": 500}),
]


def _time(request: web.Request, name: str) -> dt.datetime | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise SecurityProblem(400, f"query parameter {name!r} must be an ISO 8601 time") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


@routes.get("/audit")
@operation(
    "listAudit",
    "security",
    "Read the audit log",
    "Newest first; filters combine with AND; `next` pages to older entries.",
    {
        "200": ok("AuditList", "Audit entries"),
        "400": problem("A filter is malformed"),
    },
    parameters=AUDIT_PARAMETERS,
)
async def list_audit(request: web.Request) -> web.Response:
    """Newest first; filters: principal, tenant, action, target, since, until; pages with
    ``before_id`` (the ``next`` link)."""
    principal = principal_of(request)
    tenant = request.query.get("tenant")
    if principal is not None and not principal.is_global:
        if tenant is not None and tenant != principal.tenant:
            return web.json_response({"items": [], "limit": 0})
        tenant = principal.tenant
    limit = int_param(request, "limit", 100, 1, MAX_LIMIT)
    assert limit is not None
    query = AuditQuery(
        principal=request.query.get("principal"),
        tenant=tenant,
        action=request.query.get("action"),
        target=request.query.get("target"),
        since=_time(request, "since"),
        until=_time(request, "until"),
        before_id=int_param(request, "before_id", None, 1, 2**62),
        limit=limit,
    )
    entries = await request.app[STORE].list_audit(query)
    body: dict[str, Any] = {"items": [audit_body(e) for e in entries], "limit": limit}
    if len(entries) == limit:
        params = dict(request.query)
        params["before_id"] = str(entries[-1].id)
        body["next"] = str(request.rel_url.with_query(params))
    return web.Response(text=json.dumps(body), content_type="application/json")
