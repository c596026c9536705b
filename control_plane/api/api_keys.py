"""``/api-keys``: create (the key is in this one response only), list (no secrets), revoke.

A tenant admin manages the keys of its own tenant; a global admin (tenant ``*``) manages
all and may create global keys. Revoking also drops the key from this process's
verification cache, so the very next request with it fails here; other replicas stop
accepting it within the cache's TTL (``control_plane.security.api_keys``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web

from control_plane.api.body import json_body
from control_plane.api.caller import AUDIT_DRAFT, principal_of
from control_plane.api.openapi.spec import Json, ok, operation, problem, ref
from control_plane.keys import SECURITY, STORE
from control_plane.security.api_keys import issue_key
from control_plane.security.context import AuditDraft, SecurityProblem
from control_plane.security.principal import GLOBAL_TENANT, ROLES, Principal
from control_plane.store.protocol import ApiKeyRecord

__all__ = ["key_body", "routes"]

routes = web.RouteTableDef()

MAX_NAME = 200
_NO_STORE = {"Cache-Control": "no-store"}
_KEY_ID: Json = {"name": "key_id", "in": "path", "required": True, "schema": {"type": "string"}}
_KEY_BODY: Json = {
    "required": True,
    "content": {"application/json": {"schema": ref("schemas", "ApiKeyInput")}},
}


def key_body(record: ApiKeyRecord, now: dt.datetime | None = None) -> dict[str, Any]:
    current = now or dt.datetime.now(dt.UTC)
    state = "active"
    if record.revoked_at is not None:
        state = "revoked"
    elif record.expires_at is not None and record.expires_at <= current:
        state = "expired"
    return {
        "id": record.id,
        "prefix": record.prefix,
        "name": record.name,
        "role": record.role,
        "tenant": record.tenant,
        "created_at": record.created_at.isoformat(),
        "expires_at": record.expires_at.isoformat() if record.expires_at else None,
        "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
        "state": state,
    }


def _caller(request: web.Request) -> Principal:
    principal = principal_of(request)
    assert principal is not None, "the security middleware runs first"
    return principal


def _expiry(body: dict[str, Any], now: dt.datetime) -> dt.datetime | None:
    if "expires_in" in body and "expires_at" in body:
        raise SecurityProblem(422, "give expires_in or expires_at, not both")
    if "expires_in" in body:
        seconds = body["expires_in"]
        if not isinstance(seconds, int) or isinstance(seconds, bool) or not 1 <= seconds <= 10**9:
            raise SecurityProblem(422, "expires_in must be a number of seconds from 1")
        return now + dt.timedelta(seconds=seconds)
    if body.get("expires_at") is not None:
        raw = body["expires_at"]
        try:
            at = dt.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
        except ValueError:
            raise SecurityProblem(422, "expires_at must be an ISO 8601 time") from None
        at = at if at.tzinfo else at.replace(tzinfo=dt.UTC)
        if at <= now:
            raise SecurityProblem(422, "expires_at must be in the future")
        return at
    return None


@routes.post("/api-keys")
@operation(
    "createApiKey",
    "security",
    "Create an API key",
    "The response is the only place the key ever appears; store it.",
    {
        "201": ok("ApiKeyCreated", "Created (the key is in `key`)"),
        "400": problem("The body is not JSON"),
        "413": problem("The body is larger than 1 MiB"),
        "415": problem("The body is not application/json"),
        "422": problem("The body is invalid"),
    },
    body=_KEY_BODY,
)
async def create_key(request: web.Request) -> web.Response:
    caller = _caller(request)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise SecurityProblem(422, "the body must be a JSON object")
    unknown = sorted(set(body) - {"name", "role", "tenant", "expires_in", "expires_at"})
    if unknown:
        raise SecurityProblem(422, f"unknown field(s): {', '.join(unknown)}")
    name = body.get("name")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= MAX_NAME:
        raise SecurityProblem(422, f"name must be a non-empty string of at most {MAX_NAME}")
    role = body.get("role", "viewer")
    if role not in ROLES:
        raise SecurityProblem(422, f"role must be one of {', '.join(ROLES)}")
    tenant = body.get("tenant", caller.tenant)
    if not isinstance(tenant, str) or not tenant or len(tenant) > 128:
        raise SecurityProblem(422, "tenant must be a non-empty string")
    if not caller.is_global and tenant != caller.tenant:
        raise SecurityProblem(
            403,
            f"your credentials are scoped to tenant {caller.tenant!r}; "
            "you can create keys for that tenant only",
        )
    now = dt.datetime.now(dt.UTC)
    issued = issue_key(
        name=name.strip(), role=role, tenant=tenant, expires_at=_expiry(body, now), now=now
    )
    await request.app[STORE].create_api_key(issued.record)
    out = key_body(issued.record, now)
    request[AUDIT_DRAFT] = AuditDraft(f"api_key/{issued.record.id}", tenant, None, out)
    return web.json_response(
        {**out, "key": issued.key},
        status=201,
        headers={"Location": f"/api-keys/{issued.record.id}", **_NO_STORE},
    )


@routes.get("/api-keys")
@operation(
    "listApiKeys",
    "security",
    "List API keys",
    "Metadata only, never a key or its hash. Tenant admins see their tenant's.",
    {"200": ok("ApiKeyList", "The keys")},
)
async def list_keys(request: web.Request) -> web.Response:
    caller = _caller(request)
    tenant = None if caller.is_global else caller.tenant
    records = await request.app[STORE].list_api_keys(tenant)
    return web.json_response({"items": [key_body(r) for r in records]}, headers=_NO_STORE)


@routes.delete("/api-keys/{key_id}")
@operation(
    "revokeApiKey",
    "security",
    "Revoke an API key",
    "Takes effect on the very next request at this replica, and within 1 s at the "
    "others (their verified-key cache). Revoking twice is harmless.",
    {
        "204": {"description": "Revoked"},
        "404": problem("No such key (or one of another tenant)"),
    },
    parameters=[_KEY_ID],
)
async def revoke_key(request: web.Request) -> web.Response:
    caller = _caller(request)
    key_id = request.match_info["key_id"]
    store = request.app[STORE]
    record = await store.get_api_key(key_id)
    if record is None or not caller.sees(record.tenant):
        raise SecurityProblem(404, f"no API key {key_id!r}")
    if record.tenant == GLOBAL_TENANT and not caller.is_global:
        raise SecurityProblem(404, f"no API key {key_id!r}")
    revoked = await store.revoke_api_key(key_id, dt.datetime.now(dt.UTC))
    request.app[SECURITY].api_keys.invalidate(key_id)  # before the next request is read
    request[AUDIT_DRAFT] = AuditDraft(
        f"api_key/{key_id}", record.tenant, key_body(record), key_body(revoked)
    )
    return web.Response(status=204)
