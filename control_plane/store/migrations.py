"""Ordered schema migrations, one SQL text per engine.

Each engine applies the migrations it has not recorded in ``schema_migrations`` at
``open()``, all inside one transaction (so a failed migration leaves the schema as it
was), and records every applied id there. Migrations are append-only: never edit or
reorder a released one, add a new one instead.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

__all__ = [
    "MIGRATIONS",
    "POSTGRES_BOOKKEEPING",
    "SQLITE_BOOKKEEPING",
    "Migration",
    "pending",
]


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step. Statements run in order; each tuple item is one statement."""

    id: str
    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]


SQLITE_BOOKKEEPING = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ( id TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
)
POSTGRES_BOOKKEEPING = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " id TEXT PRIMARY KEY,"
    " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
)

# SQLite keeps timestamps as ISO 8601 text in UTC (``+00:00``), which sorts correctly,
# and JSON as text; PostgreSQL uses TIMESTAMPTZ and JSONB.
_INITIAL = Migration(
    id="0001_initial",
    sqlite=(
        "CREATE TABLE integrations ("
        " id TEXT PRIMARY KEY,"
        " document TEXT NOT NULL,"
        " version INTEGER NOT NULL CHECK (version >= 1),"
        " created_at TEXT NOT NULL,"
        " updated_at TEXT NOT NULL)",
        "CREATE TABLE port_assignments ("
        " integration_id TEXT PRIMARY KEY,"
        " port INTEGER NOT NULL UNIQUE CHECK (port BETWEEN 1 AND 65535))",
        # AUTOINCREMENT: a seq is never reused, even after the newest row is deleted,
        # so the relay's publication order stays strictly increasing.
        "CREATE TABLE outbox ("
        " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
        " id TEXT NOT NULL UNIQUE,"
        " type TEXT NOT NULL,"
        " envelope TEXT NOT NULL,"
        " created_at TEXT NOT NULL,"
        " sent_at TEXT NULL,"
        " attempts INTEGER NOT NULL DEFAULT 0)",
        "CREATE INDEX outbox_pending ON outbox (seq) WHERE sent_at IS NULL",
    ),
    postgres=(
        "CREATE TABLE integrations ("
        " id TEXT PRIMARY KEY,"
        " document JSONB NOT NULL,"
        " version INTEGER NOT NULL CHECK (version >= 1),"
        " created_at TIMESTAMPTZ NOT NULL,"
        " updated_at TIMESTAMPTZ NOT NULL)",
        "CREATE TABLE port_assignments ("
        " integration_id TEXT PRIMARY KEY,"
        " port INTEGER NOT NULL UNIQUE CHECK (port BETWEEN 1 AND 65535))",
        "CREATE TABLE outbox ("
        " seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
        " id TEXT NOT NULL UNIQUE,"
        " type TEXT NOT NULL,"
        " envelope JSONB NOT NULL,"
        " created_at TIMESTAMPTZ NOT NULL,"
        " sent_at TIMESTAMPTZ NULL,"
        " attempts INTEGER NOT NULL DEFAULT 0)",
        "CREATE INDEX outbox_pending ON outbox (seq) WHERE sent_at IS NULL",
    ),
)

# Created now, used by the audit and API-key issues later.
_AUDIT_AND_KEYS = Migration(
    id="0002_audit_log_api_keys",
    sqlite=(
        "CREATE TABLE audit_log ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " at TEXT NOT NULL,"
        " principal TEXT NOT NULL,"
        " tenant TEXT NULL,"
        " action TEXT NOT NULL,"
        " target TEXT NOT NULL,"
        " before TEXT NULL,"
        " after TEXT NULL,"
        " request_id TEXT NULL)",
        "CREATE INDEX audit_log_at ON audit_log (at)",
        "CREATE TABLE api_keys ("
        " id TEXT PRIMARY KEY,"
        " prefix TEXT NOT NULL UNIQUE,"
        " hash TEXT NOT NULL,"
        " name TEXT NOT NULL,"
        " role TEXT NOT NULL,"
        " tenant TEXT NULL,"
        " created_at TEXT NOT NULL,"
        " expires_at TEXT NULL,"
        " revoked_at TEXT NULL)",
    ),
    postgres=(
        "CREATE TABLE audit_log ("
        " id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
        " at TIMESTAMPTZ NOT NULL,"
        " principal TEXT NOT NULL,"
        " tenant TEXT NULL,"
        " action TEXT NOT NULL,"
        " target TEXT NOT NULL,"
        " before JSONB NULL,"
        " after JSONB NULL,"
        " request_id TEXT NULL)",
        "CREATE INDEX audit_log_at ON audit_log (at)",
        "CREATE TABLE api_keys ("
        " id TEXT PRIMARY KEY,"
        " prefix TEXT NOT NULL UNIQUE,"
        " hash TEXT NOT NULL,"
        " name TEXT NOT NULL,"
        " role TEXT NOT NULL,"
        " tenant TEXT NULL,"
        " created_at TIMESTAMPTZ NOT NULL,"
        " expires_at TIMESTAMPTZ NULL,"
        " revoked_at TIMESTAMPTZ NULL)",
    ),
)

MIGRATIONS: tuple[Migration, ...] = (_INITIAL, _AUDIT_AND_KEYS)


def pending(
    applied: Collection[str], migrations: Sequence[Migration] = MIGRATIONS
) -> list[Migration]:
    """The migrations not yet in ``applied``, in order."""
    return [m for m in migrations if m.id not in applied]
