"""Registered integrations and the listen ports assigned to them.

Rows hold the integration *document* (``to_document(..., with_meta=False)``: credentials
stay references) plus the metadata the store owns: ``version`` (optimistic concurrency,
starts at 1, +1 per update), ``created_at``/``updated_at`` (UTC) and the assigned
``listen_port``. Every mutation may carry outbox events that are committed in the same
transaction, so an event is never lost nor sent for a mutation that did not happen; in
that transaction too, the engine tells other replicas of the change
(:meth:`SqlIntegrationStore._announce`: a ``NOTIFY`` on PostgreSQL).

The SQL here is run by both engines. Inserting and replacing a document are not: they
set ``created_at``/``updated_at`` from different clocks (see
:meth:`SqlIntegrationStore._insert_integration`), so each engine writes those two.
"""

from __future__ import annotations

import builtins
import datetime as dt
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

from control_plane.store.errors import ConflictError, NotFoundError, StoreError
from control_plane.store.outbox import OutboxEvent, insert_events
from control_plane.store.rows import Row, json_value
from control_plane.store.sessions import Session, SessionRunner, UniqueViolation, Work, json_text

__all__ = [
    "SELECT_BY_ID",
    "SELECT_INTEGRATION",
    "IntegrationStore",
    "SqlIntegrationStore",
    "StoredIntegration",
    "integration_from_row",
]

# The columns integration_from_row reads. CAST: PostgreSQL keeps the document as JSONB;
# both engines hand it back as text.
SELECT_INTEGRATION = (
    "SELECT id, CAST(document AS TEXT) AS document, version, created_at, updated_at"
    " FROM integrations"
)
SELECT_BY_ID = SELECT_INTEGRATION + " WHERE id = ?"
_SELECT_VERSION = "SELECT version FROM integrations WHERE id = ?"
_DELETE = "DELETE FROM integrations WHERE id = ?"
_DELETE_AT_VERSION = _DELETE + " AND version = ?"
_SELECT_PORTS = "SELECT integration_id, port FROM port_assignments"
# An upsert both engines spell alike (SQLite has taken ON CONFLICT ... DO UPDATE since 3.24).
_ASSIGN_PORT = (
    "INSERT INTO port_assignments (integration_id, port) VALUES (?, ?)"
    " ON CONFLICT (integration_id) DO UPDATE SET port = excluded.port"
)
_RELEASE_PORT = "DELETE FROM port_assignments WHERE integration_id = ?"

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class StoredIntegration:
    id: str
    document: Mapping[str, Any]
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime


@runtime_checkable
class IntegrationStore(Protocol):
    """Registered integrations, and the listen ports of declared and registered ones."""

    async def list(self) -> builtins.list[StoredIntegration]: ...

    async def get(self, integration_id: str) -> StoredIntegration | None: ...

    async def create(
        self,
        integration_id: str,
        document: Mapping[str, Any],
        events: Sequence[OutboxEvent] = (),
    ) -> StoredIntegration:
        """Insert at version 1; :class:`ConflictError` when the id exists."""

    async def update(
        self,
        integration_id: str,
        document: Mapping[str, Any],
        expected_version: int,
        events: Sequence[OutboxEvent] = (),
    ) -> StoredIntegration:
        """Replace when the stored version equals ``expected_version``, else ConflictError
        (NotFoundError when absent). Never overwrites a newer version."""

    async def delete(
        self,
        integration_id: str,
        expected_version: int | None = None,
        events: Sequence[OutboxEvent] = (),
    ) -> None: ...

    # Listen ports: stable once assigned, for declared and registered integrations alike.
    async def port_assignments(self) -> dict[str, int]: ...

    async def assign_port(self, integration_id: str, port: int) -> None:
        """Record ``port`` for ``integration_id``; ConflictError if another id holds it."""

    async def release_port(self, integration_id: str) -> None: ...


def integration_from_row(row: Row, session: Session) -> StoredIntegration:
    """A row with the columns of :data:`SELECT_INTEGRATION`."""
    return StoredIntegration(
        id=row["id"],
        document=json_value(row["document"]),
        version=row["version"],
        created_at=session.timestamp(row["created_at"]),
        updated_at=session.timestamp(row["updated_at"]),
    )


async def _missing_or_stale(
    session: Session, integration_id: str, expected: int | None
) -> StoreError:
    """Why a write at ``expected`` matched no row: the id is absent, or at another version."""
    rows = await session.fetch(_SELECT_VERSION, integration_id)
    if not rows:
        return NotFoundError(f"integration {integration_id!r} not found")
    version = rows[0]["version"]
    return ConflictError(f"integration {integration_id!r} is at version {version}, not {expected}")


class SqlIntegrationStore(SessionRunner):
    """:class:`IntegrationStore` on any engine's sessions."""

    async def list(self) -> builtins.list[StoredIntegration]:
        async def work(session: Session) -> builtins.list[StoredIntegration]:
            rows = await session.fetch(SELECT_INTEGRATION + " ORDER BY id")
            return [integration_from_row(row, session) for row in rows]

        return await self._read(work)

    async def get(self, integration_id: str) -> StoredIntegration | None:
        async def work(session: Session) -> StoredIntegration | None:
            rows = await session.fetch(SELECT_BY_ID, integration_id)
            return integration_from_row(rows[0], session) if rows else None

        return await self._read(work)

    async def create(
        self,
        integration_id: str,
        document: Mapping[str, Any],
        events: Sequence[OutboxEvent] = (),
    ) -> StoredIntegration:
        body = json_text(document)

        async def insert(session: Session) -> StoredIntegration:
            try:
                return await self._insert_integration(session, integration_id, body)
            except UniqueViolation as exc:
                raise ConflictError(f"integration {integration_id!r} already exists") from exc

        return await self._with_events(events, insert, ("create", integration_id))

    async def update(
        self,
        integration_id: str,
        document: Mapping[str, Any],
        expected_version: int,
        events: Sequence[OutboxEvent] = (),
    ) -> StoredIntegration:
        body = json_text(document)

        async def replace(session: Session) -> StoredIntegration:
            stored = await self._replace_integration(
                session, integration_id, body, expected_version
            )
            if stored is None:
                raise await _missing_or_stale(session, integration_id, expected_version)
            return stored

        return await self._with_events(events, replace, ("update", integration_id))

    async def delete(
        self,
        integration_id: str,
        expected_version: int | None = None,
        events: Sequence[OutboxEvent] = (),
    ) -> None:
        async def remove(session: Session) -> None:
            if expected_version is None:
                deleted = await session.execute(_DELETE, integration_id)
            else:
                deleted = await session.execute(
                    _DELETE_AT_VERSION, integration_id, expected_version
                )
            if not deleted:
                raise await _missing_or_stale(session, integration_id, expected_version)
            # The port goes with the integration, in the same transaction.
            await session.execute(_RELEASE_PORT, integration_id)

        await self._with_events(events, remove, ("delete", integration_id))

    async def _with_events(
        self, events: Sequence[OutboxEvent], mutation: Work[_T], change: tuple[str, str]
    ) -> _T:
        """Run ``mutation``, append ``events`` and announce ``change`` (op, id) in one
        transaction, so they are committed exactly when the mutation is (a failed one
        raises before them)."""

        async def work(session: Session) -> _T:
            result = await mutation(session)
            await insert_events(session, events)
            await self._announce(session, *change)
            return result

        return await self._write(work)

    async def port_assignments(self) -> dict[str, int]:
        rows = await self._read(lambda session: session.fetch(_SELECT_PORTS))
        return {row["integration_id"]: row["port"] for row in rows}

    async def assign_port(self, integration_id: str, port: int) -> None:
        async def work(session: Session) -> None:
            try:
                await session.execute(_ASSIGN_PORT, integration_id, port)
            except UniqueViolation as exc:
                raise ConflictError(f"port {port} is assigned to another integration") from exc

        await self._write(work)

    async def release_port(self, integration_id: str) -> None:
        await self._write(lambda session: session.execute(_RELEASE_PORT, integration_id))

    @abstractmethod
    async def _insert_integration(
        self, session: Session, integration_id: str, body: str
    ) -> StoredIntegration:
        """Insert ``body`` (JSON text) at version 1 with ``created_at == updated_at``.

        Engine-specific: PostgreSQL takes both timestamps from the server clock every
        replica shares (``statement_timestamp()``, once per statement) and reads the row
        back with ``RETURNING``; SQLite, a single process's file, takes one reading of
        the store's own clock. A duplicate id raises :class:`UniqueViolation`.
        """

    @abstractmethod
    async def _replace_integration(
        self, session: Session, integration_id: str, body: str, expected_version: int
    ) -> StoredIntegration | None:
        """Replace the document if the row is at ``expected_version``, else None.

        ``updated_at`` must strictly increase even when the clock did not move. Engine-
        specific for the same clock reasons as :meth:`_insert_integration`: PostgreSQL
        decides in one conditional ``UPDATE ... RETURNING`` (its row lock settles races),
        SQLite reads the row first under its write lock.
        """

    @abstractmethod
    async def _announce(self, session: Session, op: str, integration_id: str) -> None:
        """Tell other replicas, in the write's transaction, that ``op`` (create, update,
        delete) changed ``integration_id``: delivered on commit, never on rollback.

        Engine-specific: PostgreSQL sends a ``NOTIFY`` (:mod:`~control_plane.store.notify`)
        its replicas LISTEN for; SQLite, one process's file, has no replica to tell.
        """
