"""The engine-neutral connection every concern module is written against.

Each concern (integrations and ports, outbox, API keys, audit) holds its SQL and its
logic once, as ``async`` code that talks to a :class:`Session`; the two engines only
supply sessions and transactions. That is what keeps the SQL and the code from being
written twice. A session hides the three ways the engines differ below the SQL text:

* placeholders: shared statements use ``?`` (qmark, what ``sqlite3`` takes); the
  PostgreSQL session numbers them ``$1``, ``$2``… for asyncpg. So shared SQL must not
  hold a ``?`` that is not a placeholder (no string literal with one, no jsonb ``?``);
* values: a ``datetime`` argument is stored as ISO 8601 UTC text on SQLite and as
  ``TIMESTAMPTZ`` on PostgreSQL; :meth:`Session.timestamp` reads it back. JSON is text
  on both sides (asyncpg takes and returns jsonb as ``str``): :func:`json_text` writes it,
  :func:`~control_plane.store.rows.json_value` reads it;
* errors: a duplicate key is :class:`UniqueViolation` on both engines.

Both engines also know ``statement_timestamp()``: PostgreSQL has it, the SQLite engine
defines it on its connection, so a shared statement can name the clock once.
"""

from __future__ import annotations

import datetime as dt
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol, TypeVar

from control_plane.store.errors import ConflictError
from control_plane.store.rows import Row

__all__ = [
    "Session",
    "SessionRunner",
    "UniqueViolation",
    "Work",
    "json_text",
]

_T = TypeVar("_T")


class UniqueViolation(ConflictError):
    """The engine refused a row for a duplicate key.

    Concern code catches it where a duplicate means something (an id that exists, a
    port held by another integration) and raises a :class:`ConflictError` that says so;
    one it does not catch is still a ConflictError. SQLite reports every constraint as
    ``IntegrityError``, so there a failed CHECK lands here too, as it always did.
    """


class Session(Protocol):
    """One connection of one engine, inside the transaction the store opened (if any)."""

    def timestamp(self, value: Any) -> dt.datetime:
        """A non-null timestamp column's value as an aware ``datetime``."""

    async def execute(self, sql: str, *args: Any) -> int:
        """Run a statement; the number of rows it changed."""

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        """Run a query; all of its rows."""

    async def insert_id(self, sql: str, *args: Any) -> int:
        """Run an ``INSERT`` of one row into a table keyed by an identity; the new id.

        The engines differ here: SQLite reports ``lastrowid``, PostgreSQL needs a
        ``RETURNING id`` (which the session appends), so the shared text has neither.
        """


#: A unit of work on a session: what :meth:`SessionRunner._read` and ``_write`` run.
Work = Callable[[Session], Coroutine[Any, Any, _T]]


class SessionRunner(ABC):
    """A store that runs :data:`Work` on its engine's sessions.

    The concern classes (``SqlIntegrationStore``, ``SqlOutboxStore``…) build on it and
    each engine implements the two methods: SQLite on its one connection in a worker
    thread, PostgreSQL on a pooled connection. Failures of the database become
    :class:`~control_plane.store.errors.StoreUnavailableError` there.
    """

    @abstractmethod
    async def _read(self, work: Work[_T]) -> _T:
        """Run ``work`` outside any transaction (each statement sees committed rows)."""

    @abstractmethod
    async def _write(self, work: Work[_T]) -> _T:
        """Run ``work`` in one transaction: all of it commits, or none of it."""

    async def ping(self) -> None:
        """Raise :class:`StoreUnavailableError` when the database is unreachable."""
        await self._read(lambda session: session.fetch("SELECT 1"))


def json_text(value: Mapping[str, Any]) -> str:
    """A JSON column's value as both engines store it: compact text of the mapping."""
    return json.dumps(dict(value), separators=(",", ":"))
