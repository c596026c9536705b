"""The audit log: who did what to which object, with before/after, in the store.

Recorded by the security middleware after every *successful* mutating call (see the
``action`` column of the permission matrix): principal id (never a credential), the
tenant the object belongs to, action, target (``integration/<id>``, ``api_key/<id>``),
redacted before/after documents, the request id and the time. ``GET /audit`` serves it
to admins (tenant admins see their tenant's entries only).

Redaction: credential fields are references (``env:NAME``) by schema and stay; any other
value under a secret-looking key is replaced by ``***``; every value the control plane
has resolved as a secret is scrubbed from the text as a last line of defence.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from control_plane.api.keys import STORE
from control_plane.api.query import int_param
from control_plane.observability.logging import scrub
from control_plane.registry.model import CREDENTIAL_REF_PATTERN
from control_plane.security.context import SecurityProblem, principal_of
from control_plane.security.principal import Principal
from control_plane.store.protocol import AuditEntry, AuditQuery, RegistryStore

__all__ = ["audit_body", "record", "redact", "routes"]

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

REDACTED = "***"
_SECRET_KEY = re.compile(
    r"(secret|password|passwd|token|api_?key|private|credential|authorization)", re.I
)
MAX_LIMIT = 500


def redact(value: Any, *, key: str = "") -> Any:
    """A copy of ``value`` with secret-looking values replaced (references are kept)."""
    if isinstance(value, Mapping):
        return {str(k): redact(v, key=str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, key=key) for v in value]
    if isinstance(value, str):
        if _SECRET_KEY.search(key) and not CREDENTIAL_REF_PATTERN.match(value):
            return REDACTED
        return scrub(value)
    return value


async def record(
    store: RegistryStore,
    principal: Principal,
    *,
    action: str,
    target: str,
    tenant: str | None,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    request_id: str | None,
) -> None:
    entry = AuditEntry(
        at=dt.datetime.now(dt.UTC),
        principal=principal.id,
        tenant=tenant,
        action=action,
        target=target,
        before=None if before is None else redact(before),
        after=None if after is None else redact(after),
        request_id=request_id,
    )
    try:
        await store.append_audit(entry)
    except Exception:  # the mutation happened; losing its audit entry must be loud
        log.exception("could not write the audit entry", extra={"action": action, "target": target})


def audit_body(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at.isoformat(),
        "principal": entry.principal,
        "tenant": entry.tenant,
        "action": entry.action,
        "target": entry.target,
        "before": entry.before,
        "after": entry.after,
        "request_id": entry.request_id,
    }


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
