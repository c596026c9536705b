"""The embedded engine: one stdlib ``sqlite3`` connection driven from worker threads.

``sqlite3`` blocks, so every call runs in ``asyncio.to_thread``; a single connection
guarded by an ``asyncio.Lock`` keeps statements from different tasks from interleaving
(and serialises the optimistic-concurrency checks). Writes use ``BEGIN IMMEDIATE`` so the
write lock is taken up front: a second process on the same file waits ``busy_timeout``
instead of failing half-way through a read-then-write. WAL lets readers in other
processes (``sqlite3`` CLI, backups) proceed while we write.
"""

from __future__ import annotations

import asyncio
import builtins
import datetime as dt
import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from control_plane.store import sqlite_security as security
from control_plane.store.migrations import SQLITE_BOOKKEEPING, pending
from control_plane.store.protocol import (
    ApiKeyRecord,
    AuditEntry,
    AuditQuery,
    ConflictError,
    NotFoundError,
    OutboxEvent,
    StoredIntegration,
    StoreError,
    StoreUnavailableError,
)
from control_plane.store.rows import event_from_row, integration_from_row

__all__ = ["SqliteStore"]

_T = TypeVar("_T")
_Work = Callable[[sqlite3.Connection], _T]
_ONE_MICROSECOND = dt.timedelta(microseconds=1)
_SELECT = "SELECT id, document, version, created_at, updated_at FROM integrations"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _ts(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _parse_ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def _dumps(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), separators=(",", ":"))


def _integration(row: sqlite3.Row) -> StoredIntegration:
    return integration_from_row(row, _parse_ts)


def _write(conn: sqlite3.Connection, body: _Work[_T]) -> _T:
    """Run ``body`` in a write transaction: all of it commits, or none of it."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = body(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def _insert_events(conn: sqlite3.Connection, events: Sequence[OutboxEvent]) -> None:
    for event in events:
        try:
            conn.execute(
                "INSERT INTO outbox (id, type, envelope, created_at, attempts)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    event.id,
                    event.type,
                    _dumps(event.envelope),
                    _ts(event.created_at or _now()),
                    event.attempts,
                ),
            )
        except sqlite3.IntegrityError as exc:
            raise ConflictError(f"outbox event {event.id!r} already exists") from exc


def _select_one(conn: sqlite3.Connection, integration_id: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        _SELECT + " WHERE id = ?",
        (integration_id,),
    ).fetchone()
    return row


def _missing_or_stale(conn: sqlite3.Connection, integration_id: str, expected: int) -> StoreError:
    row = _select_one(conn, integration_id)
    if row is None:
        return NotFoundError(f"integration {integration_id!r} not found")
    return ConflictError(
        f"integration {integration_id!r} is at version {row['version']}, not {expected}"
    )


class SqliteStore:
    """:class:`~control_plane.store.protocol.RegistryStore` on a local SQLite file."""

    def __init__(self, path: Path, *, busy_timeout: float = 5.0) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    @property
    def path(self) -> Path:
        return self._path

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        if self._conn is not None:
            return
        try:
            self._conn = await asyncio.to_thread(self._connect)
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailableError(f"cannot open SQLite store {self._path}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: no implicit transactions, we issue BEGIN/COMMIT ourselves.
        # check_same_thread=False: to_thread picks any worker; the asyncio.Lock serialises.
        conn = sqlite3.connect(
            self._path,
            timeout=self._busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            _write(conn, _migrate)
        except BaseException:
            conn.close()
            raise
        return conn

    async def close(self) -> None:
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await asyncio.to_thread(conn.close)

    async def ping(self) -> None:
        await self._run(lambda conn: conn.execute("SELECT 1").fetchone())

    async def _run(self, work: _Work[_T]) -> _T:
        async with self._lock:
            conn = self._conn
            if conn is None:
                raise StoreUnavailableError(f"SQLite store {self._path} is not open")
            task = asyncio.ensure_future(asyncio.to_thread(work, conn))
            try:
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                # The worker thread still uses the connection: keep the lock until it ends.
                await asyncio.wait({task})
                raise
            except sqlite3.OperationalError as exc:  # locked, disk I/O, read-only file...
                raise StoreUnavailableError(f"SQLite store {self._path}: {exc}") from exc

    # -- integrations ----------------------------------------------------------------

    async def list(self) -> builtins.list[StoredIntegration]:
        def work(conn: sqlite3.Connection) -> builtins.list[StoredIntegration]:
            rows = conn.execute(_SELECT + " ORDER BY id").fetchall()
            return [_integration(row) for row in rows]

        return await self._run(work)

    async def get(self, integration_id: str) -> StoredIntegration | None:
        def work(conn: sqlite3.Connection) -> StoredIntegration | None:
            row = _select_one(conn, integration_id)
            return None if row is None else _integration(row)

        return await self._run(work)

    async def create(
        self,
        integration_id: str,
        document: Mapping[str, Any],
        events: Sequence[OutboxEvent] = (),
    ) -> StoredIntegration:
        body = _dumps(document)

        def work(conn: sqlite3.Connection) -> StoredIntegration:
            now = _now()
            try:
                conn.execute(
                    "INSERT INTO integrations (id, document, version, created_at, updated_at)"
                    " VALUES (?, ?, 1, ?, ?)",
                    (integration_id, body, _ts(now), _ts(now)),
                )
            except sqlite3.IntegrityError as exc:
                raise ConflictError(f"integration {integration_id!r} already exists") from exc
            _insert_events(conn, events)
            return StoredIntegration(integration_id, json.loads(body), 1, now, now)

        return await self._run(lambda conn: _write(conn, work))

    async def update(
        self,
        integration_id: str,
        document: Mapping[str, Any],
        expected_version: int,
        events: Sequence[OutboxEvent] = (),
    ) -> StoredIntegration:
        body = _dumps(document)

        def work(conn: sqlite3.Connection) -> StoredIntegration:
            row = _select_one(conn, integration_id)
            if row is None or row["version"] != expected_version:
                raise _missing_or_stale(conn, integration_id, expected_version)
            # updated_at strictly increases even when the clock did not move.
            updated_at = max(_now(), _parse_ts(row["updated_at"]) + _ONE_MICROSECOND)
            conn.execute(
                "UPDATE integrations SET document = ?, version = version + 1, updated_at = ?"
                " WHERE id = ? AND version = ?",
                (body, _ts(updated_at), integration_id, expected_version),
            )
            _insert_events(conn, events)
            return StoredIntegration(
                integration_id,
                json.loads(body),
                expected_version + 1,
                _parse_ts(row["created_at"]),
                updated_at,
            )

        return await self._run(lambda conn: _write(conn, work))

    async def delete(
        self,
        integration_id: str,
        expected_version: int | None = None,
        events: Sequence[OutboxEvent] = (),
    ) -> None:
        def work(conn: sqlite3.Connection) -> None:
            if expected_version is None:
                cursor = conn.execute("DELETE FROM integrations WHERE id = ?", (integration_id,))
            else:
                cursor = conn.execute(
                    "DELETE FROM integrations WHERE id = ? AND version = ?",
                    (integration_id, expected_version),
                )
            if cursor.rowcount == 0:
                raise _missing_or_stale(conn, integration_id, expected_version or 0)
            # The port goes with the integration, in the same transaction.
            conn.execute("DELETE FROM port_assignments WHERE integration_id = ?", (integration_id,))
            _insert_events(conn, events)

        await self._run(lambda conn: _write(conn, work))

    # -- listen ports ----------------------------------------------------------------

    async def port_assignments(self) -> dict[str, int]:
        def work(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute("SELECT integration_id, port FROM port_assignments").fetchall()
            return {row["integration_id"]: row["port"] for row in rows}

        return await self._run(work)

    async def assign_port(self, integration_id: str, port: int) -> None:
        def work(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO port_assignments (integration_id, port) VALUES (?, ?)"
                    " ON CONFLICT (integration_id) DO UPDATE SET port = excluded.port",
                    (integration_id, port),
                )
            except sqlite3.IntegrityError as exc:
                raise ConflictError(f"port {port} is assigned to another integration") from exc

        await self._run(lambda conn: _write(conn, work))

    async def release_port(self, integration_id: str) -> None:
        def work(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM port_assignments WHERE integration_id = ?", (integration_id,))

        await self._run(lambda conn: _write(conn, work))

    # -- outbox ----------------------------------------------------------------------

    async def append_events(self, events: Sequence[OutboxEvent]) -> None:
        if events:
            await self._run(lambda conn: _write(conn, lambda c: _insert_events(c, events)))

    async def pending_events(self, limit: int = 100) -> builtins.list[OutboxEvent]:
        def work(conn: sqlite3.Connection) -> builtins.list[OutboxEvent]:
            rows = conn.execute(
                "SELECT seq, id, type, envelope, created_at, attempts FROM outbox"
                " WHERE sent_at IS NULL ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
            return [event_from_row(row, _parse_ts) for row in rows]

        return await self._run(work)

    async def mark_sent(self, seqs: Sequence[int]) -> None:
        if not seqs:
            return
        sent_at = _ts(_now())

        def work(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE outbox SET sent_at = ? WHERE seq = ? AND sent_at IS NULL",
                [(sent_at, seq) for seq in seqs],
            )

        await self._run(lambda conn: _write(conn, work))

    # -- API keys and audit (statements in sqlite_security) ----------------------------

    async def create_api_key(self, record: ApiKeyRecord) -> None:
        await self._run(lambda conn: _write(conn, lambda c: security.create_api_key(c, record)))

    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        return await self._run(lambda conn: security.get_api_key(conn, key_id))

    async def list_api_keys(self, tenant: str | None = None) -> builtins.list[ApiKeyRecord]:
        return await self._run(lambda conn: security.list_api_keys(conn, tenant))

    async def revoke_api_key(self, key_id: str, at: dt.datetime) -> ApiKeyRecord:
        return await self._run(
            lambda conn: _write(conn, lambda c: security.revoke_api_key(c, key_id, at))
        )

    async def append_audit(self, entry: AuditEntry) -> AuditEntry:
        return await self._run(lambda conn: _write(conn, lambda c: security.append_audit(c, entry)))

    async def list_audit(self, query: AuditQuery) -> builtins.list[AuditEntry]:
        return await self._run(lambda conn: security.list_audit(conn, query))


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute(SQLITE_BOOKKEEPING)
    applied = {row[0] for row in conn.execute("SELECT id FROM schema_migrations")}
    for migration in pending(applied):
        for statement in migration.sqlite:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO schema_migrations (id, applied_at) VALUES (?, ?)",
            (migration.id, _ts(_now())),
        )
