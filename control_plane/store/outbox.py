"""The event outbox: CloudEvents envelopes committed with the mutation that caused them.

The relay drains it in ``seq`` order and marks what it published; the integration
mutations append to it inside their own transaction (:func:`insert_events`), so an
event is never lost nor sent for a mutation that did not happen. The SQL is written
once for both engines, except marking a batch sent (see :meth:`SqlOutboxStore._mark_sent`).
"""

from __future__ import annotations

import builtins
import datetime as dt
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from control_plane.store.errors import ConflictError
from control_plane.store.rows import Row, json_value
from control_plane.store.sessions import Session, SessionRunner, UniqueViolation, json_text

__all__ = ["OutboxEvent", "OutboxStore", "SqlOutboxStore", "insert_events"]

# An event without ``created_at`` takes the database's clock (SQLite: the store's).
_INSERT_EVENT = (
    "INSERT INTO outbox (id, type, envelope, created_at, attempts)"
    " VALUES (?, ?, ?, COALESCE(?, statement_timestamp()), ?)"
)
# CAST: PostgreSQL keeps the envelope as JSONB; both engines hand it back as text.
_SELECT_PENDING = (
    "SELECT seq, id, type, CAST(envelope AS TEXT) AS envelope, created_at, attempts"
    " FROM outbox WHERE sent_at IS NULL ORDER BY seq LIMIT ?"
)


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """A CloudEvents envelope waiting to be published (written with its mutation)."""

    id: str
    type: str
    envelope: Mapping[str, Any]
    seq: int = 0  # assigned by the store; strictly increasing publication order
    created_at: dt.datetime | None = None
    attempts: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class OutboxStore(Protocol):
    """The outbox, drained by the event relay in ``seq`` order."""

    async def append_events(self, events: Sequence[OutboxEvent]) -> None: ...

    async def pending_events(self, limit: int = 100) -> builtins.list[OutboxEvent]: ...

    async def mark_sent(self, seqs: Sequence[int]) -> None: ...


async def insert_events(session: Session, events: Sequence[OutboxEvent]) -> None:
    """Append ``events`` in the caller's transaction; ConflictError on a duplicate id."""
    # One INSERT per event, in order: the identity column hands out seq in that order.
    for event in events:
        try:
            await session.execute(
                _INSERT_EVENT,
                event.id,
                event.type,
                json_text(event.envelope),
                event.created_at,
                event.attempts,
            )
        except UniqueViolation as exc:
            raise ConflictError(f"outbox event {event.id!r} already exists") from exc


def _event(row: Row, session: Session) -> OutboxEvent:
    return OutboxEvent(
        id=row["id"],
        type=row["type"],
        envelope=json_value(row["envelope"]),
        seq=row["seq"],
        created_at=session.timestamp(row["created_at"]),
        attempts=row["attempts"],
    )


class SqlOutboxStore(SessionRunner):
    """:class:`OutboxStore` on any engine's sessions."""

    async def append_events(self, events: Sequence[OutboxEvent]) -> None:
        if events:
            await self._write(lambda session: insert_events(session, events))

    async def pending_events(self, limit: int = 100) -> builtins.list[OutboxEvent]:
        async def work(session: Session) -> builtins.list[OutboxEvent]:
            return [_event(row, session) for row in await session.fetch(_SELECT_PENDING, limit)]

        return await self._read(work)

    async def mark_sent(self, seqs: Sequence[int]) -> None:
        if seqs:
            await self._write(lambda session: self._mark_sent(session, seqs))

    @abstractmethod
    async def _mark_sent(self, session: Session, seqs: Sequence[int]) -> None:
        """Set ``sent_at`` on the still-pending events among ``seqs`` (not empty).

        Engine-specific: PostgreSQL takes the whole batch as one array parameter in one
        statement; SQLite has no array type, so it runs one statement per event.
        """
