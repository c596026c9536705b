"""PostgreSQL statements for API keys and the audit log (used by :class:`PostgresStore`).

Each function runs on a connection the store hands it (in a transaction for writes).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import asyncpg

from control_plane.store.protocol import (
    ApiKeyRecord,
    AuditEntry,
    AuditQuery,
    ConflictError,
    NotFoundError,
)
from control_plane.store.rows import api_key_from_row, as_datetime, audit_entry_from_row

__all__ = [
    "append_audit",
    "create_api_key",
    "get_api_key",
    "list_api_keys",
    "list_audit",
    "revoke_api_key",
]

_SELECT_KEYS = (
    "SELECT id, prefix, hash, name, role, tenant, created_at, expires_at, revoked_at FROM api_keys"
)
_SELECT_AUDIT = (
    "SELECT id, at, principal, tenant, action, target, before::text AS before,"
    " after::text AS after, request_id FROM audit_log"
)


def _key(row: asyncpg.Record) -> ApiKeyRecord:
    return api_key_from_row(row, as_datetime)


async def create_api_key(conn: asyncpg.Connection, record: ApiKeyRecord) -> None:
    try:
        await conn.execute(
            "INSERT INTO api_keys (id, prefix, hash, name, role, tenant,"
            " created_at, expires_at, revoked_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            record.id,
            record.prefix,
            record.hash,
            record.name,
            record.role,
            record.tenant,
            record.created_at,
            record.expires_at,
            record.revoked_at,
        )
    except asyncpg.UniqueViolationError as exc:
        raise ConflictError(f"API key {record.id!r} already exists") from exc


async def get_api_key(conn: asyncpg.Connection, key_id: str) -> ApiKeyRecord | None:
    row = await conn.fetchrow(_SELECT_KEYS + " WHERE id = $1", key_id)
    return None if row is None else _key(row)


async def list_api_keys(conn: asyncpg.Connection, tenant: str | None) -> list[ApiKeyRecord]:
    rows = await conn.fetch(
        _SELECT_KEYS + " WHERE ($1::text IS NULL OR tenant = $1) ORDER BY created_at, id",
        tenant,
    )
    return [_key(row) for row in rows]


async def revoke_api_key(conn: asyncpg.Connection, key_id: str, at: dt.datetime) -> ApiKeyRecord:
    await conn.execute(
        "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL", key_id, at
    )
    record = await get_api_key(conn, key_id)
    if record is None:
        raise NotFoundError(f"no API key {key_id!r}")
    return record


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(dict(value), separators=(",", ":"))


async def append_audit(conn: asyncpg.Connection, entry: AuditEntry) -> AuditEntry:
    ident = await conn.fetchval(
        "INSERT INTO audit_log (at, principal, tenant, action, target, before, after, request_id)"
        " VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8) RETURNING id",
        entry.at,
        entry.principal,
        entry.tenant,
        entry.action,
        entry.target,
        _json(entry.before),
        _json(entry.after),
        entry.request_id,
    )
    return AuditEntry(
        at=entry.at,
        principal=entry.principal,
        tenant=entry.tenant,
        action=entry.action,
        target=entry.target,
        before=entry.before,
        after=entry.after,
        request_id=entry.request_id,
        id=int(ident),
    )


async def list_audit(conn: asyncpg.Connection, query: AuditQuery) -> list[AuditEntry]:
    where: list[str] = []
    args: list[Any] = []
    for column, value in (
        ("principal", query.principal),
        ("tenant", query.tenant),
        ("action", query.action),
        ("target", query.target),
        ("at >=", query.since),
        ("at <", query.until),
        ("id <", query.before_id),
    ):
        if value is not None:
            args.append(value)
            op = column if " " in column else f"{column} ="
            where.append(f"{op} ${len(args)}")
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    args.append(query.limit)
    rows = await conn.fetch(
        _SELECT_AUDIT + clause + " ORDER BY id DESC LIMIT $" + str(len(args)),
        *args,
    )
    return [audit_entry_from_row(row, as_datetime) for row in rows]
