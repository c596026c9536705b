"""Rows → store records, shared by the SQLite and PostgreSQL engines.

Both engines' rows are indexed by column name and select JSON columns as text; they
differ only in how a timestamp comes back — an aware ``datetime`` from asyncpg, ISO 8601
text from SQLite — so each engine passes its own ``timestamp`` conversion. The SQL stays
with each engine.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any, Protocol

from control_plane.store.protocol import ApiKeyRecord, AuditEntry, OutboxEvent, StoredIntegration

__all__ = [
    "Row",
    "Timestamp",
    "api_key_from_row",
    "as_datetime",
    "audit_entry_from_row",
    "event_from_row",
    "integration_from_row",
]


class Row(Protocol):
    """``asyncpg.Record`` and ``sqlite3.Row`` alike."""

    def __getitem__(self, column: str, /) -> Any: ...


#: A non-null timestamp column's value → an aware ``datetime``.
Timestamp = Callable[[Any], dt.datetime]


def as_datetime(value: dt.datetime) -> dt.datetime:
    """The ``timestamp`` of a driver that already returns aware datetimes (asyncpg)."""
    return value


def _optional(timestamp: Timestamp, value: Any) -> dt.datetime | None:
    return None if value is None else timestamp(value)


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def integration_from_row(row: Row, timestamp: Timestamp) -> StoredIntegration:
    return StoredIntegration(
        id=row["id"],
        document=json.loads(row["document"]),
        version=row["version"],
        created_at=timestamp(row["created_at"]),
        updated_at=timestamp(row["updated_at"]),
    )


def event_from_row(row: Row, timestamp: Timestamp) -> OutboxEvent:
    return OutboxEvent(
        id=row["id"],
        type=row["type"],
        envelope=json.loads(row["envelope"]),
        seq=row["seq"],
        created_at=timestamp(row["created_at"]),
        attempts=row["attempts"],
    )


def api_key_from_row(row: Row, timestamp: Timestamp) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row["id"],
        prefix=row["prefix"],
        hash=row["hash"],
        name=row["name"],
        role=row["role"],
        tenant=row["tenant"],
        created_at=timestamp(row["created_at"]),
        expires_at=_optional(timestamp, row["expires_at"]),
        revoked_at=_optional(timestamp, row["revoked_at"]),
    )


def audit_entry_from_row(row: Row, timestamp: Timestamp) -> AuditEntry:
    return AuditEntry(
        at=timestamp(row["at"]),
        principal=row["principal"],
        tenant=row["tenant"],
        action=row["action"],
        target=row["target"],
        before=_json(row["before"]),
        after=_json(row["after"]),
        request_id=row["request_id"],
        id=row["id"],
    )
