"""The shared engine: PostgreSQL through an asyncpg pool.

Every write runs in one transaction (mutation + port + outbox events). Optimistic
concurrency is a conditional ``UPDATE ... WHERE id = $1 AND version = $2``: under READ
COMMITTED a concurrent writer blocks on the row lock, then re-checks the ``WHERE``
against the committed row, so of two writers holding the same version exactly one
matches (https://www.postgresql.org/docs/15/transaction-iso.html#XACT-READ-COMMITTED).

The statements and their logic are the concern modules' (shared with SQLite); this
engine supplies the session they run on and the few statements it spells its own way.
Connection failures become :class:`StoreUnavailableError`; their messages never carry
the DSN's password (see :mod:`~control_plane.store.postgres_dsn`).

Every integration write also commits a ``NOTIFY`` for the other replicas, and
:meth:`PostgresStore.watch_changes` listens for theirs (:mod:`~control_plane.store.notify`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg

from control_plane.store.api_keys import SqlApiKeyStore
from control_plane.store.audit import SqlAuditStore
from control_plane.store.errors import StoreError, StoreUnavailableError
from control_plane.store.integrations import (
    SqlIntegrationStore,
    StoredIntegration,
    integration_from_row,
)
from control_plane.store.migrations import POSTGRES, apply_migrations
from control_plane.store.notify import (
    APPLICATION_NAME,
    CHANNEL,
    NOTIFY,
    ChangeListener,
    StoreChange,
    change_payload,
)
from control_plane.store.outbox import SqlOutboxStore
from control_plane.store.postgres_dsn import redact_dsn, scrub
from control_plane.store.rows import Row
from control_plane.store.sessions import Session, UniqueViolation, Work

__all__ = ["PostgresStore", "redact_dsn"]

_T = TypeVar("_T")
# Serialises schema migration between replicas opening the same database at once.
_MIGRATION_LOCK = "SELECT pg_advisory_xact_lock(?)"
_MIGRATION_LOCK_KEY = 0x1D7E_57A7
# statement_timestamp(): one value per statement (clock_timestamp() would differ between
# created_at and updated_at), taken from the server clock that every replica shares.
# RETURNING: the columns of SELECT_INTEGRATION, the ones integration_from_row reads.
_INSERT = (
    "INSERT INTO integrations (id, document, version, created_at, updated_at)"
    " VALUES (?, ?, 1, statement_timestamp(), statement_timestamp())"
    " RETURNING id, CAST(document AS TEXT) AS document, version, created_at, updated_at"
)
# GREATEST: updated_at strictly increases even if the clock did not move.
_UPDATE = (
    "UPDATE integrations SET document = ?, version = version + 1,"
    " updated_at = GREATEST(statement_timestamp(), updated_at + interval '1 microsecond')"
    " WHERE id = ? AND version = ?"
    " RETURNING id, CAST(document AS TEXT) AS document, version, created_at, updated_at"
)
# The whole batch as one array parameter, in one statement (SQLite has no arrays).
_MARK_SENT = (
    "UPDATE outbox SET sent_at = statement_timestamp()"
    " WHERE seq = ANY(?::bigint[]) AND sent_at IS NULL"
)
# Errors meaning "the database cannot be reached", as opposed to a bug or a conflict.
# InterfaceError covers a closed pool and a connection lost mid-query
# (ConnectionDoesNotExistError); OperatorInterventionError covers CannotConnectNowError
# (starting up) and AdminShutdownError (shutting down).
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
)


@functools.lru_cache(maxsize=256)
def _numbered(sql: str) -> str:
    """``sql`` with its ``?`` placeholders numbered ``$1``, ``$2``… as asyncpg takes them."""
    first, *rest = sql.split("?")
    return first + "".join(f"${n}{piece}" for n, piece in enumerate(rest, start=1))


def _affected(status: str) -> int:
    """The row count of a command status (``INSERT 0 1``, ``DELETE 3``; 0 for DDL)."""
    count = status.rpartition(" ")[2]
    return int(count) if count.isdigit() else 0


class _PostgresSession:
    """:class:`~control_plane.store.sessions.Session` on one pooled asyncpg connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    def timestamp(self, value: Any) -> dt.datetime:
        stamp: dt.datetime = value  # asyncpg already returns TIMESTAMPTZ as aware datetimes
        return stamp

    async def execute(self, sql: str, *args: Any) -> int:
        return _affected(await self._call(self._conn.execute, sql, args))

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        rows: list[Row] = await self._call(self._conn.fetch, sql, args)
        return rows

    async def insert_id(self, sql: str, *args: Any) -> int:
        return int(await self._call(self._conn.fetchval, sql + " RETURNING id", args))

    async def _call(
        self, method: Callable[..., Awaitable[Any]], sql: str, args: tuple[Any, ...]
    ) -> Any:
        try:
            return await method(_numbered(sql), *args)
        except asyncpg.UniqueViolationError as exc:
            raise UniqueViolation(str(exc)) from exc


class PostgresStore(SqlIntegrationStore, SqlOutboxStore, SqlApiKeyStore, SqlAuditStore):
    """:class:`~control_plane.store.protocol.RegistryStore` on PostgreSQL (asyncpg pool)."""

    def __init__(
        self,
        dsn: str,
        *,
        connect_timeout: float = 5.0,
        command_timeout: float = 10.0,
        min_size: int = 1,
        max_size: int = 10,
    ) -> None:
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._min_size = min_size
        self._max_size = max_size
        self._pool: asyncpg.Pool | None = None
        # Names this process's writes in their NOTIFY, so its listener skips its own.
        self.origin = uuid.uuid4().hex

    @property
    def redacted_dsn(self) -> str:
        return redact_dsn(self._dsn)

    def __repr__(self) -> str:
        return f"PostgresStore({self.redacted_dsn!r})"

    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
        detail = scrub(str(exc) or type(exc).__name__, self._dsn)
        return StoreUnavailableError(
            f"PostgreSQL at {self.redacted_dsn} is unavailable: {type(exc).__name__}: {detail}"
        )

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                timeout=self._connect_timeout,
                command_timeout=self._command_timeout,
            )
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from None
        except asyncpg.PostgresError as exc:  # e.g. bad credentials, unknown database
            raise self._unavailable(exc) from None
        try:
            async with pool.acquire(timeout=self._connect_timeout) as conn, conn.transaction():
                session = _PostgresSession(conn)
                await session.execute(_MIGRATION_LOCK, _MIGRATION_LOCK_KEY)
                await apply_migrations(session, POSTGRES)
        except _UNAVAILABLE as exc:
            await pool.close()
            raise self._unavailable(exc) from None
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    @contextlib.asynccontextmanager
    async def _connection(self, *, write: bool) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection (in a transaction when ``write``); failures → unavailable.

        A connection lost before COMMIT means the server rolled the transaction back,
        so nothing was written.
        """
        pool = self._pool
        if pool is None:
            raise StoreUnavailableError(f"PostgreSQL store {self.redacted_dsn} is not open")
        try:
            async with pool.acquire(timeout=self._connect_timeout) as conn:
                if write:
                    async with conn.transaction():
                        yield conn
                else:
                    yield conn
        except StoreError:
            raise
        except _UNAVAILABLE as exc:
            raise self._unavailable(exc) from None

    async def _read(self, work: Work[_T]) -> _T:
        async with self._connection(write=False) as conn:
            return await work(_PostgresSession(conn))

    async def _write(self, work: Work[_T]) -> _T:
        async with self._connection(write=True) as conn:
            return await work(_PostgresSession(conn))

    # -- what this engine spells its own way -----------------------------------------

    async def _insert_integration(
        self, session: Session, integration_id: str, body: str
    ) -> StoredIntegration:
        rows = await session.fetch(_INSERT, integration_id, body)
        return integration_from_row(rows[0], session)

    async def _replace_integration(
        self, session: Session, integration_id: str, body: str, expected_version: int
    ) -> StoredIntegration | None:
        rows = await session.fetch(_UPDATE, body, integration_id, expected_version)
        return integration_from_row(rows[0], session) if rows else None

    async def _mark_sent(self, session: Session, seqs: Sequence[int]) -> None:
        await session.execute(_MARK_SENT, list(seqs))

    async def _announce(self, session: Session, op: str, integration_id: str) -> None:
        await session.execute(NOTIFY, CHANNEL, change_payload(self.origin, op, integration_id))

    # -- other replicas' changes -----------------------------------------------------

    def watch_changes(
        self, on_change: Callable[[StoreChange], None], on_connected: Callable[[], None]
    ) -> ChangeListener:
        """A not-yet-started listener for the writes other processes commit here."""

        async def connect() -> asyncpg.Connection:
            try:
                return await asyncpg.connect(
                    self._dsn,
                    timeout=self._connect_timeout,
                    command_timeout=self._command_timeout,
                    server_settings={"application_name": APPLICATION_NAME},
                )
            except (*_UNAVAILABLE, asyncpg.PostgresError) as exc:
                raise self._unavailable(exc) from None

        return ChangeListener(
            connect,
            origin=self.origin,
            on_change=on_change,
            on_connected=on_connected,
            where=self.redacted_dsn,
        )
