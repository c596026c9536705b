"""The shared engine: PostgreSQL through an asyncpg pool.

Every write runs in one transaction (mutation + port + outbox events). Optimistic
concurrency is a conditional ``UPDATE ... WHERE id = $1 AND version = $2``: under READ
COMMITTED a concurrent writer blocks on the row lock, then re-checks the ``WHERE``
against the committed row, so of two writers holding the same version exactly one
matches (https://www.postgresql.org/docs/15/transaction-iso.html#XACT-READ-COMMITTED).

Connection failures become :class:`StoreUnavailableError`; their messages never carry
the DSN's password (see :func:`redact_dsn`).
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as dt
import json
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from control_plane.store import postgres_security as security
from control_plane.store.migrations import POSTGRES_BOOKKEEPING, pending
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
from control_plane.store.rows import as_datetime, event_from_row, integration_from_row

__all__ = ["PostgresStore", "redact_dsn"]

_REDACTED = "***"
# Serialises schema migration between replicas opening the same database at once.
_MIGRATION_LOCK_KEY = 0x1D7E_57A7
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
# statement_timestamp(): one value per statement (clock_timestamp() would differ between
# created_at and updated_at), taken from the server clock that every replica shares.
_INSERT = (
    "INSERT INTO integrations (id, document, version, created_at, updated_at)"
    " VALUES ($1, $2::jsonb, 1, statement_timestamp(), statement_timestamp())"
    " RETURNING id, document::text AS document, version, created_at, updated_at"
)
# GREATEST: updated_at strictly increases even if the clock did not move.
_UPDATE = (
    "UPDATE integrations SET document = $3::jsonb, version = version + 1,"
    " updated_at = GREATEST(statement_timestamp(), updated_at + interval '1 microsecond')"
    " WHERE id = $1 AND version = $2"
    " RETURNING id, document::text AS document, version, created_at, updated_at"
)
_SELECT = "SELECT id, document::text AS document, version, created_at, updated_at FROM integrations"
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


def redact_dsn(dsn: str) -> str:
    """``dsn`` with any password replaced by ``***`` (URL userinfo, query or keywords)."""
    if "://" not in dsn:
        return _KEYWORD_PASSWORD.sub(rf"\g<1>{_REDACTED}", dsn)
    try:
        parts = urlsplit(dsn)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostinfo = netloc.rpartition("@")
            user, has_password, _ = userinfo.partition(":")
            netloc = f"{user}:{_REDACTED}@{hostinfo}" if has_password else netloc
        query = urlencode(
            [
                (key, _REDACTED if key.lower() == "password" else value)
                for key, value in parse_qsl(parts.query, keep_blank_values=True)
            ],
            safe="*",
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<unparseable dsn>"


def _passwords(dsn: str) -> list[str]:
    """Every spelling of the password found in ``dsn`` (to scrub driver messages)."""
    found: list[str] = []
    with contextlib.suppress(ValueError):
        parts = urlsplit(dsn)
        if parts.password:
            found.append(parts.password)
        found += [v for k, v in parse_qsl(parts.query) if k.lower() == "password" and v]
        if "@" in parts.netloc:
            raw = parts.netloc.rpartition("@")[0].partition(":")[2]
            if raw:
                found.append(raw)
    found += [m.group(2).strip("'") for m in _KEYWORD_PASSWORD.finditer(dsn)]
    return [p for p in found if p]


def _dumps(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), separators=(",", ":"))


def _integration(row: asyncpg.Record) -> StoredIntegration:
    return integration_from_row(row, as_datetime)


async def _missing_or_stale(
    conn: asyncpg.Connection, integration_id: str, expected: int | None
) -> StoreError:
    version = await conn.fetchval("SELECT version FROM integrations WHERE id = $1", integration_id)
    if version is None:
        return NotFoundError(f"integration {integration_id!r} not found")
    return ConflictError(f"integration {integration_id!r} is at version {version}, not {expected}")


async def _insert_events(conn: asyncpg.Connection, events: Sequence[OutboxEvent]) -> None:
    # One INSERT per event, in order: the identity column hands out seq in that order.
    for event in events:
        try:
            await conn.execute(
                "INSERT INTO outbox (id, type, envelope, created_at, attempts)"
                " VALUES ($1, $2, $3::jsonb, COALESCE($4, statement_timestamp()), $5)",
                event.id,
                event.type,
                _dumps(event.envelope),
                event.created_at,
                event.attempts,
            )
        except asyncpg.UniqueViolationError as exc:
            raise ConflictError(f"outbox event {event.id!r} already exists") from exc


class PostgresStore:
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

    @property
    def redacted_dsn(self) -> str:
        return redact_dsn(self._dsn)

    def __repr__(self) -> str:
        return f"PostgresStore({self.redacted_dsn!r})"

    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
        detail = str(exc) or type(exc).__name__
        for secret in _passwords(self._dsn):
            detail = detail.replace(secret, _REDACTED)
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
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK_KEY)
                await _migrate(conn)
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

    async def ping(self) -> None:
        async with self._connection(write=False) as conn:
            await conn.fetchval("SELECT 1")

    # -- integrations ----------------------------------------------------------------

    async def list(self) -> builtins.list[StoredIntegration]:
        async with self._connection(write=False) as conn:
            rows = await conn.fetch(_SELECT + " ORDER BY id")
        return [_integration(row) for row in rows]

    async def get(self, integration_id: str) -> StoredIntegration | None:
        async with self._connection(write=False) as conn:
            row = await conn.fetchrow(
                _SELECT + " WHERE id = $1",
                integration_id,
            )
        return None if row is None else _integration(row)

    async def create(
        self,
        integration_id: str,
        document: Mapping[str, Any],
        events: Sequence[OutboxEvent] = (),
    ) -> StoredIntegration:
        async with self._connection(write=True) as conn:
            try:
                row = await conn.fetchrow(
                    _INSERT,
                    integration_id,
                    _dumps(document),
                )
            except asyncpg.UniqueViolationError as exc:
                raise ConflictError(f"integration {integration_id!r} already exists") from exc
            await _insert_events(conn, events)
        assert row is not None
        return _integration(row)

    async def update(
        self,
        integration_id: str,
        document: Mapping[str, Any],
        expected_version: int,
        events: Sequence[OutboxEvent] = (),
    ) -> StoredIntegration:
        async with self._connection(write=True) as conn:
            row = await conn.fetchrow(
                _UPDATE,
                integration_id,
                expected_version,
                _dumps(document),
            )
            if row is None:
                raise await _missing_or_stale(conn, integration_id, expected_version)
            await _insert_events(conn, events)
        return _integration(row)

    async def delete(
        self,
        integration_id: str,
        expected_version: int | None = None,
        events: Sequence[OutboxEvent] = (),
    ) -> None:
        async with self._connection(write=True) as conn:
            deleted = await conn.fetchval(
                "DELETE FROM integrations WHERE id = $1 AND ($2::int IS NULL OR version = $2)"
                " RETURNING id",
                integration_id,
                expected_version,
            )
            if deleted is None:
                raise await _missing_or_stale(conn, integration_id, expected_version)
            # The port goes with the integration, in the same transaction.
            await conn.execute(
                "DELETE FROM port_assignments WHERE integration_id = $1", integration_id
            )
            await _insert_events(conn, events)

    # -- listen ports ----------------------------------------------------------------

    async def port_assignments(self) -> dict[str, int]:
        async with self._connection(write=False) as conn:
            rows = await conn.fetch("SELECT integration_id, port FROM port_assignments")
        return {row["integration_id"]: row["port"] for row in rows}

    async def assign_port(self, integration_id: str, port: int) -> None:
        async with self._connection(write=True) as conn:
            try:
                await conn.execute(
                    "INSERT INTO port_assignments (integration_id, port) VALUES ($1, $2)"
                    " ON CONFLICT (integration_id) DO UPDATE SET port = EXCLUDED.port",
                    integration_id,
                    port,
                )
            except asyncpg.UniqueViolationError as exc:
                raise ConflictError(f"port {port} is assigned to another integration") from exc

    async def release_port(self, integration_id: str) -> None:
        async with self._connection(write=True) as conn:
            await conn.execute(
                "DELETE FROM port_assignments WHERE integration_id = $1", integration_id
            )

    # -- outbox ----------------------------------------------------------------------

    async def append_events(self, events: Sequence[OutboxEvent]) -> None:
        if events:
            async with self._connection(write=True) as conn:
                await _insert_events(conn, events)

    async def pending_events(self, limit: int = 100) -> builtins.list[OutboxEvent]:
        async with self._connection(write=False) as conn:
            rows = await conn.fetch(
                "SELECT seq, id, type, envelope::text AS envelope, created_at, attempts"
                " FROM outbox WHERE sent_at IS NULL ORDER BY seq LIMIT $1",
                limit,
            )
        return [event_from_row(row, as_datetime) for row in rows]

    async def mark_sent(self, seqs: Sequence[int]) -> None:
        if not seqs:
            return
        async with self._connection(write=True) as conn:
            await conn.execute(
                "UPDATE outbox SET sent_at = statement_timestamp()"
                " WHERE seq = ANY($1::bigint[]) AND sent_at IS NULL",
                builtins.list(seqs),
            )

    # -- API keys and audit (statements in postgres_security) --------------------------

    async def create_api_key(self, record: ApiKeyRecord) -> None:
        async with self._connection(write=True) as conn:
            await security.create_api_key(conn, record)

    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        async with self._connection(write=False) as conn:
            return await security.get_api_key(conn, key_id)

    async def list_api_keys(self, tenant: str | None = None) -> builtins.list[ApiKeyRecord]:
        async with self._connection(write=False) as conn:
            return await security.list_api_keys(conn, tenant)

    async def revoke_api_key(self, key_id: str, at: dt.datetime) -> ApiKeyRecord:
        async with self._connection(write=True) as conn:
            return await security.revoke_api_key(conn, key_id, at)

    async def append_audit(self, entry: AuditEntry) -> AuditEntry:
        async with self._connection(write=True) as conn:
            return await security.append_audit(conn, entry)

    async def list_audit(self, query: AuditQuery) -> builtins.list[AuditEntry]:
        async with self._connection(write=False) as conn:
            return await security.list_audit(conn, query)


async def _migrate(conn: asyncpg.Connection) -> None:
    await conn.execute(POSTGRES_BOOKKEEPING)
    applied = {row["id"] for row in await conn.fetch("SELECT id FROM schema_migrations")}
    for migration in pending(applied):
        for statement in migration.postgres:
            await conn.execute(statement)
        await conn.execute("INSERT INTO schema_migrations (id) VALUES ($1)", migration.id)
