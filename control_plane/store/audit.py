"""The audit log: one row per audited mutation, appended and read back newest first.

Every statement here is run by both engines as written; only reading back the new
row's id differs, which :meth:`Session.insert_id` hides.
"""

from __future__ import annotations

import builtins
import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from control_plane.store.rows import Row, json_value
from control_plane.store.sessions import Session, SessionRunner, json_text

__all__ = ["AuditEntry", "AuditQuery", "AuditStore", "SqlAuditStore"]

_INSERT = (
    "INSERT INTO audit_log (at, principal, tenant, action, target, before, after, request_id)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
# CAST: PostgreSQL keeps before/after as JSONB; both engines hand them back as text.
_SELECT = (
    "SELECT id, at, principal, tenant, action, target, CAST(before AS TEXT) AS before,"
    " CAST(after AS TEXT) AS after, request_id FROM audit_log"
)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audited mutation; ``before``/``after`` are already redacted by the caller."""

    at: dt.datetime
    principal: str
    tenant: str | None
    action: str
    target: str
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None
    request_id: str | None = None
    id: int = 0  # assigned by the store, strictly increasing


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Filters of ``list_audit`` (all optional, combined with AND); newest first."""

    principal: str | None = None
    tenant: str | None = None
    action: str | None = None
    target: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    before_id: int | None = None  # page: entries older than this id
    limit: int = 100


@runtime_checkable
class AuditStore(Protocol):
    """The audit log."""

    async def append_audit(self, entry: AuditEntry) -> AuditEntry:
        """Insert and return the entry with its id."""

    async def list_audit(self, query: AuditQuery) -> builtins.list[AuditEntry]: ...


def _optional_json(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else json_text(value)


def _entry(row: Row, session: Session) -> AuditEntry:
    return AuditEntry(
        at=session.timestamp(row["at"]),
        principal=row["principal"],
        tenant=row["tenant"],
        action=row["action"],
        target=row["target"],
        before=json_value(row["before"]),
        after=json_value(row["after"]),
        request_id=row["request_id"],
        id=row["id"],
    )


def _where(query: AuditQuery) -> tuple[str, builtins.list[Any]]:
    """The ``WHERE`` clause of ``query``'s filters (empty without any) and its arguments."""
    conditions = (
        ("principal = ?", query.principal),
        ("tenant = ?", query.tenant),
        ("action = ?", query.action),
        ("target = ?", query.target),
        ("at >= ?", query.since),
        ("at < ?", query.until),
        ("id < ?", query.before_id),
    )
    present = [(condition, value) for condition, value in conditions if value is not None]
    if not present:
        return "", []
    clause = " WHERE " + " AND ".join(condition for condition, _ in present)
    return clause, [value for _, value in present]


class SqlAuditStore(SessionRunner):
    """:class:`AuditStore` on any engine's sessions."""

    async def append_audit(self, entry: AuditEntry) -> AuditEntry:
        async def work(session: Session) -> AuditEntry:
            ident = await session.insert_id(
                _INSERT,
                entry.at,
                entry.principal,
                entry.tenant,
                entry.action,
                entry.target,
                _optional_json(entry.before),
                _optional_json(entry.after),
                entry.request_id,
            )
            return dataclasses.replace(entry, id=ident)

        return await self._write(work)

    async def list_audit(self, query: AuditQuery) -> builtins.list[AuditEntry]:
        clause, args = _where(query)

        async def work(session: Session) -> builtins.list[AuditEntry]:
            rows = await session.fetch(
                _SELECT + clause + " ORDER BY id DESC LIMIT ?", *args, query.limit
            )
            return [_entry(row, session) for row in rows]

        return await self._read(work)
