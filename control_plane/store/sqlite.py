"""The embedded engine: one stdlib ``sqlite3`` connection driven from worker threads.

``sqlite3`` blocks, so every call runs in ``asyncio.to_thread``; a single connection
guarded by an ``asyncio.Lock`` keeps statements from different tasks from interleaving
(and serialises the optimistic-concurrency checks). Writes use ``BEGIN IMMEDIATE`` so the
write lock is taken up front: a second process on the same file waits ``busy_timeout``
instead of failing half-way through a read-then-write. WAL lets readers in other
processes (``sqlite3`` CLI, backups) proceed while we write.

No write pays for a WAL checkpoint. SQLite's automatic checkpoint runs inside the commit
that takes the log past 1,000 pages: copying them into the database and syncing it made
one ``PUT`` in a few hundred take 40 ms longer (the propagation benchmark's worst sample,
issue 20). Here commits only append to the log, and a background task checkpoints it every
``checkpoint_interval`` seconds (``PASSIVE``: it never waits for, nor blocks, a reader or
a writer) on a connection of its own, in a worker thread; closing the store checkpoints
what is left.

The statements and their logic are the concern modules' (shared with PostgreSQL); this
engine supplies the session they run on and the few statements it spells its own way.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import sqlite3
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from control_plane.store.api_keys import SqlApiKeyStore
from control_plane.store.audit import SqlAuditStore
from control_plane.store.errors import StoreUnavailableError
from control_plane.store.integrations import SELECT_BY_ID, SqlIntegrationStore, StoredIntegration
from control_plane.store.migrations import SQLITE, apply_migrations
from control_plane.store.outbox import SqlOutboxStore
from control_plane.store.rows import Row
from control_plane.store.sessions import Session, UniqueViolation, Work

__all__ = ["SqliteStore"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_ONE_MICROSECOND = dt.timedelta(microseconds=1)
# Engine-specific (see SqlIntegrationStore._insert_integration): the timestamps are the
# store's clock, bound as parameters; SQLite's own clock in SQL has no microseconds.
_INSERT = (
    "INSERT INTO integrations (id, document, version, created_at, updated_at)"
    " VALUES (?, ?, 1, ?, ?)"
)
_UPDATE = (
    "UPDATE integrations SET document = ?, version = version + 1, updated_at = ?"
    " WHERE id = ? AND version = ?"
)
# One statement per event: SQLite has no array parameter (PostgreSQL marks a batch at once).
_MARK_SENT = "UPDATE outbox SET sent_at = ? WHERE seq = ? AND sent_at IS NULL"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _ts(value: dt.datetime) -> str:
    """A timestamp as stored: ISO 8601 in UTC with microseconds (so text order is time order)."""
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _statement_timestamp() -> str:
    """``statement_timestamp()`` for the shared SQL, which names PostgreSQL's clock."""
    return _ts(_now())


def _bind(value: Any) -> Any:
    return _ts(value) if isinstance(value, dt.datetime) else value


class _SqliteSession:
    """:class:`~control_plane.store.sessions.Session` on the store's connection.

    Called in the worker thread that holds the connection. Its methods are ``async``
    only to match the Protocol: each is one blocking call that never suspends.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def timestamp(self, value: Any) -> dt.datetime:
        return dt.datetime.fromisoformat(value)

    async def execute(self, sql: str, *args: Any) -> int:
        return max(self._cursor(sql, args).rowcount, 0)  # -1 for statements without rows

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        rows: list[Row] = self._cursor(sql, args).fetchall()
        return rows

    async def insert_id(self, sql: str, *args: Any) -> int:
        ident = self._cursor(sql, args).lastrowid
        assert ident is not None
        return ident

    def _cursor(self, sql: str, args: tuple[Any, ...]) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, tuple(_bind(arg) for arg in args))
        except sqlite3.IntegrityError as exc:
            raise UniqueViolation(str(exc)) from exc


def _complete(work: Coroutine[Any, Any, _T]) -> _T:
    """Run ``work`` to its end here, in the calling thread, without an event loop.

    The concern modules are ``async`` so that one text serves both engines. On this
    engine every session call returns without suspending, so the coroutine finishes on
    its first step: one ``to_thread`` per store call, as with synchronous code, and the
    whole unit of work runs in the thread that holds the connection.
    """
    try:
        work.send(None)
    except StopIteration as finished:
        result: _T = finished.value
        return result
    work.close()
    raise RuntimeError("SQLite store work suspended: it may await its session only")


def _close(conn: sqlite3.Connection) -> None:
    """Checkpoint what the log holds (the last connection's close would too, unless another
    process has the file open), then close."""
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    except sqlite3.Error:
        pass  # closing must not fail for it: the log is replayed at the next open
    conn.close()


def _transaction(conn: sqlite3.Connection, work: Work[_T]) -> _T:
    """Run ``work`` in a write transaction: all of it commits, or none of it."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = _complete(work(_SqliteSession(conn)))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


class SqliteStore(SqlIntegrationStore, SqlOutboxStore, SqlApiKeyStore, SqlAuditStore):
    """:class:`~control_plane.store.protocol.RegistryStore` on a local SQLite file."""

    def __init__(
        self, path: Path, *, busy_timeout: float = 5.0, checkpoint_interval: float = 5.0
    ) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._checkpoint_interval = checkpoint_interval
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()
        self._checkpointer: asyncio.Task[None] | None = None
        # The worker thread of the checkpoint in progress (close waits for it).
        self._checkpointing: asyncio.Future[tuple[int, int, int]] | None = None
        # Checkpoints made by the background task (a figure for tests and debugging).
        self.checkpoints = 0

    @property
    def path(self) -> Path:
        return self._path

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        async with self._lock:  # two concurrent opens make one connection, one checkpointer
            if self._conn is not None:
                return
            try:
                self._conn = await asyncio.to_thread(self._connect)
            except (OSError, sqlite3.Error) as exc:
                raise StoreUnavailableError(
                    f"cannot open SQLite store {self._path}: {exc}"
                ) from exc
            self._checkpointer = asyncio.create_task(
                self._checkpoint_loop(), name="sqlite-checkpoint"
            )

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
            conn.create_function("statement_timestamp", 0, _statement_timestamp)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA wal_autocheckpoint=0")  # checkpointed off the request path
            conn.execute("PRAGMA foreign_keys=ON")
            _transaction(conn, lambda session: apply_migrations(session, SQLITE))
        except BaseException:
            conn.close()
            raise
        return conn

    async def close(self) -> None:
        task, self._checkpointer = self._checkpointer, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
        running = self._checkpointing
        if running is not None:  # its worker thread goes on when the task is cancelled
            await asyncio.wait({running})
            if not running.cancelled() and running.exception() is not None:
                log.warning("SQLite checkpoint failed", extra={"error": str(running.exception())})
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await asyncio.to_thread(_close, conn)

    def _checkpoint(self) -> tuple[int, int, int]:
        """One passive checkpoint on a connection of its own: (busy, frames in the log,
        frames checkpointed), as ``PRAGMA wal_checkpoint`` reports them."""
        conn = sqlite3.connect(self._path, timeout=self._busy_timeout, isolation_level=None)
        try:
            row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            conn.close()
        return int(row[0]), int(row[1]), int(row[2])

    async def checkpoint(self) -> tuple[int, int, int]:
        """Checkpoint the log now (in a worker thread; store calls go on meanwhile)."""
        running = asyncio.ensure_future(asyncio.to_thread(self._checkpoint))
        self._checkpointing = running
        try:
            result = await asyncio.shield(running)
        finally:
            if running.done():
                self._checkpointing = None
        self.checkpoints += 1
        return result

    async def _checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(self._checkpoint_interval)
            try:
                await self.checkpoint()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the next round tries again; writes are unaffected
                log.warning("SQLite checkpoint failed", extra={"error": str(exc)})

    async def _run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
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

    async def _read(self, work: Work[_T]) -> _T:
        return await self._run(lambda conn: _complete(work(_SqliteSession(conn))))

    async def _write(self, work: Work[_T]) -> _T:
        return await self._run(lambda conn: _transaction(conn, work))

    # -- what this engine spells its own way -----------------------------------------

    async def _insert_integration(
        self, session: Session, integration_id: str, body: str
    ) -> StoredIntegration:
        now = _now()
        await session.execute(_INSERT, integration_id, body, now, now)
        return StoredIntegration(integration_id, json.loads(body), 1, now, now)

    async def _replace_integration(
        self, session: Session, integration_id: str, body: str, expected_version: int
    ) -> StoredIntegration | None:
        rows = await session.fetch(SELECT_BY_ID, integration_id)
        if not rows or rows[0]["version"] != expected_version:
            return None
        # updated_at strictly increases even when the clock did not move.
        updated_at = max(_now(), session.timestamp(rows[0]["updated_at"]) + _ONE_MICROSECOND)
        await session.execute(_UPDATE, body, updated_at, integration_id, expected_version)
        return StoredIntegration(
            integration_id,
            json.loads(body),
            expected_version + 1,
            session.timestamp(rows[0]["created_at"]),
            updated_at,
        )

    async def _announce(self, session: Session, op: str, integration_id: str) -> None:
        """Nothing to do: a SQLite file has one process, so no replica to tell."""

    async def _mark_sent(self, session: Session, seqs: Sequence[int]) -> None:
        sent_at = _now()
        for seq in seqs:
            await session.execute(_MARK_SENT, sent_at, seq)
