"""SQLite statements for API keys and the audit log (used by :class:`SqliteStore`).

Each function runs on a connection the store hands it (inside its lock, and inside a
write transaction for writes). Timestamps are ISO 8601 UTC text, JSON is text.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from typing import Any

from control_plane.store.protocol import (
    ApiKeyRecord,
    AuditEntry,
    AuditQuery,
    ConflictError,
    NotFoundError,
)
from control_plane.store.rows import api_key_from_row, audit_entry_from_row

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
    "SELECT id, at, principal, tenant, action, target, before, after, request_id FROM audit_log"
)


def _ts(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _key(row: sqlite3.Row) -> ApiKeyRecord:
    return api_key_from_row(row, dt.datetime.fromisoformat)


def create_api_key(conn: sqlite3.Connection, record: ApiKeyRecord) -> None:
    try:
        conn.execute(
            "INSERT INTO api_keys (id, prefix, hash, name, role, tenant,"
            " created_at, expires_at, revoked_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.id,
                record.prefix,
                record.hash,
                record.name,
                record.role,
                record.tenant,
                _ts(record.created_at),
                _ts(record.expires_at),
                _ts(record.revoked_at),
            ),
        )
    except sqlite3.IntegrityError as exc:
        raise ConflictError(f"API key {record.id!r} already exists") from exc


def get_api_key(conn: sqlite3.Connection, key_id: str) -> ApiKeyRecord | None:
    row = conn.execute(_SELECT_KEYS + " WHERE id = ?", (key_id,)).fetchone()
    return None if row is None else _key(row)


def list_api_keys(conn: sqlite3.Connection, tenant: str | None) -> list[ApiKeyRecord]:
    if tenant is None:
        rows = conn.execute(_SELECT_KEYS + " ORDER BY created_at, id")
    else:
        rows = conn.execute(
            _SELECT_KEYS + " WHERE tenant = ? ORDER BY created_at, id",
            (tenant,),
        )
    return [_key(row) for row in rows.fetchall()]


def revoke_api_key(conn: sqlite3.Connection, key_id: str, at: dt.datetime) -> ApiKeyRecord:
    conn.execute(
        "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
        (_ts(at), key_id),
    )
    record = get_api_key(conn, key_id)
    if record is None:
        raise NotFoundError(f"no API key {key_id!r}")
    return record


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(dict(value), separators=(",", ":"))


def append_audit(conn: sqlite3.Connection, entry: AuditEntry) -> AuditEntry:
    cursor = conn.execute(
        "INSERT INTO audit_log (at, principal, tenant, action, target, before, after, request_id)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            _ts(entry.at),
            entry.principal,
            entry.tenant,
            entry.action,
            entry.target,
            _json(entry.before),
            _json(entry.after),
            entry.request_id,
        ),
    )
    assert cursor.lastrowid is not None
    return AuditEntry(
        at=entry.at,
        principal=entry.principal,
        tenant=entry.tenant,
        action=entry.action,
        target=entry.target,
        before=entry.before,
        after=entry.after,
        request_id=entry.request_id,
        id=cursor.lastrowid,
    )


def list_audit(conn: sqlite3.Connection, query: AuditQuery) -> list[AuditEntry]:
    where: list[str] = []
    args: list[Any] = []
    for column, value in (
        ("principal", query.principal),
        ("tenant", query.tenant),
        ("action", query.action),
        ("target", query.target),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if query.since is not None:
        where.append("at >= ?")
        args.append(_ts(query.since))
    if query.until is not None:
        where.append("at < ?")
        args.append(_ts(query.until))
    if query.before_id is not None:
        where.append("id < ?")
        args.append(query.before_id)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        _SELECT_AUDIT + clause + " ORDER BY id DESC LIMIT ?",
        (*args, query.limit),
    ).fetchall()
    return [audit_entry_from_row(row, dt.datetime.fromisoformat) for row in rows]
