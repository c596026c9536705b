"""Ordered schema migrations, each written once for both engines.

Each engine applies the migrations it has not recorded in ``schema_migrations`` at
``open()``, all inside one transaction (so a failed migration leaves the schema as it
was), and records every applied id there (:func:`apply_migrations`). Migrations are
append-only: never edit or reorder a released one, add a new one instead.

The engines' DDL differs only in column types, so a statement names those as
``{timestamp}``, ``{json}`` and ``{serial_key}`` and each :class:`Dialect` fills them in.
A statement with no counterpart on the other engine would need a field of its own.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from control_plane.store.sessions import Session

__all__ = [
    "MIGRATIONS",
    "POSTGRES",
    "POSTGRES_BOOKKEEPING",
    "SQLITE",
    "SQLITE_BOOKKEEPING",
    "Dialect",
    "Migration",
    "apply_migrations",
    "pending",
]

# Engine-specific, and as released (created IF NOT EXISTS, so never altered): the column
# types differ, and only PostgreSQL's stamps applied_at itself. SQLite's is given the
# store's clock (its statement_timestamp(), see control_plane.store.sessions).
SQLITE_BOOKKEEPING = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ( id TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
)
POSTGRES_BOOKKEEPING = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " id TEXT PRIMARY KEY,"
    " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
)


@dataclass(frozen=True, slots=True)
class Dialect:
    """The column types one engine spells its own way, and its bookkeeping statements."""

    bookkeeping: str  # creates schema_migrations
    record: str  # records one applied migration's id
    timestamp: str
    json: str
    serial_key: str  # an integer primary key the database numbers, never reusing one


# SQLite keeps timestamps as ISO 8601 text in UTC (``+00:00``), which sorts correctly,
# and JSON as text; PostgreSQL uses TIMESTAMPTZ and JSONB. AUTOINCREMENT: a SQLite key
# is never reused, even after the newest row is deleted, so the relay's publication
# order stays strictly increasing (an identity column never goes back either).
SQLITE = Dialect(
    bookkeeping=SQLITE_BOOKKEEPING,
    record="INSERT INTO schema_migrations (id, applied_at) VALUES (?, statement_timestamp())",
    timestamp="TEXT",
    json="TEXT",
    serial_key="INTEGER PRIMARY KEY AUTOINCREMENT",
)
POSTGRES = Dialect(
    bookkeeping=POSTGRES_BOOKKEEPING,
    record="INSERT INTO schema_migrations (id) VALUES (?)",
    timestamp="TIMESTAMPTZ",
    json="JSONB",
    serial_key="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
)


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step. Statements run in order; each tuple item is one statement."""

    id: str
    statements: tuple[str, ...]

    def render(self, dialect: Dialect) -> tuple[str, ...]:
        """The statements with ``dialect``'s column types filled in."""
        return tuple(
            statement.format(
                timestamp=dialect.timestamp, json=dialect.json, serial_key=dialect.serial_key
            )
            for statement in self.statements
        )


_INITIAL = Migration(
    id="0001_initial",
    statements=(
        "CREATE TABLE integrations ("
        " id TEXT PRIMARY KEY,"
        " document {json} NOT NULL,"
        " version INTEGER NOT NULL CHECK (version >= 1),"
        " created_at {timestamp} NOT NULL,"
        " updated_at {timestamp} NOT NULL)",
        "CREATE TABLE port_assignments ("
        " integration_id TEXT PRIMARY KEY,"
        " port INTEGER NOT NULL UNIQUE CHECK (port BETWEEN 1 AND 65535))",
        "CREATE TABLE outbox ("
        " seq {serial_key},"
        " id TEXT NOT NULL UNIQUE,"
        " type TEXT NOT NULL,"
        " envelope {json} NOT NULL,"
        " created_at {timestamp} NOT NULL,"
        " sent_at {timestamp} NULL,"
        " attempts INTEGER NOT NULL DEFAULT 0)",
        "CREATE INDEX outbox_pending ON outbox (seq) WHERE sent_at IS NULL",
    ),
)

# Created now, used by the audit and API-key issues later.
_AUDIT_AND_KEYS = Migration(
    id="0002_audit_log_api_keys",
    statements=(
        "CREATE TABLE audit_log ("
        " id {serial_key},"
        " at {timestamp} NOT NULL,"
        " principal TEXT NOT NULL,"
        " tenant TEXT NULL,"
        " action TEXT NOT NULL,"
        " target TEXT NOT NULL,"
        " before {json} NULL,"
        " after {json} NULL,"
        " request_id TEXT NULL)",
        "CREATE INDEX audit_log_at ON audit_log (at)",
        "CREATE TABLE api_keys ("
        " id TEXT PRIMARY KEY,"
        " prefix TEXT NOT NULL UNIQUE,"
        " hash TEXT NOT NULL,"
        " name TEXT NOT NULL,"
        " role TEXT NOT NULL,"
        " tenant TEXT NULL,"
        " created_at {timestamp} NOT NULL,"
        " expires_at {timestamp} NULL,"
        " revoked_at {timestamp} NULL)",
    ),
)

MIGRATIONS: tuple[Migration, ...] = (_INITIAL, _AUDIT_AND_KEYS)


def pending(
    applied: Collection[str], migrations: Sequence[Migration] = MIGRATIONS
) -> list[Migration]:
    """The migrations not yet in ``applied``, in order."""
    return [m for m in migrations if m.id not in applied]


async def apply_migrations(session: Session, dialect: Dialect) -> None:
    """Bring the schema up to date, inside the transaction the caller holds.

    Only one opener may run this at a time; the caller makes sure (SQLite's write lock,
    PostgreSQL's advisory lock).
    """
    await session.execute(dialect.bookkeeping)
    applied = {row["id"] for row in await session.fetch("SELECT id FROM schema_migrations")}
    for migration in pending(applied):
        for statement in migration.render(dialect):
            await session.execute(statement)
        await session.execute(dialect.record, migration.id)
