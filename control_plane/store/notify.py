"""Replicas on one PostgreSQL hear each other's registry writes: ``NOTIFY`` / ``LISTEN``.

Every integration write on PostgreSQL runs ``pg_notify`` on :data:`CHANNEL` inside its own
transaction, so the notification goes out exactly when the write commits (a rolled-back
write tells no one; https://www.postgresql.org/docs/15/sql-notify.html). The payload says
which store wrote (``origin``, one per process), what it did and to which id; it is a
hint, the store stays the truth, so a replica re-reads the store rather than the payload.

:class:`ChangeListener` holds one dedicated connection that LISTENs on the channel (a
pooled connection would lose its ``LISTEN`` when released). PostgreSQL does not queue
notifications for a connection that is gone, so after every (re)connection it calls
``on_connected``: the owner re-reads the whole store, which covers whatever was missed.
When the connection is lost (a termination callback, or a keepalive query failing on a
half-open socket) it logs a warning and reconnects with capped exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # asyncpg loads with the PostgreSQL store, which builds the listener
    import asyncpg

__all__ = [
    "CHANNEL",
    "NOTIFY",
    "ChangeFeed",
    "ChangeListener",
    "StoreChange",
    "change_payload",
]

log = logging.getLogger(__name__)

CHANNEL = "integration_service_registry"
# pg_notify(), not NOTIFY: the statement takes no parameters, the function does.
NOTIFY = "SELECT pg_notify(?, ?)"
# Names the listener's backend in pg_stat_activity.
APPLICATION_NAME = "integration-service-registry-listener"

Connect = Callable[[], Awaitable["asyncpg.Connection"]]


@dataclass(frozen=True, slots=True)
class StoreChange:
    """One committed write, as another replica announced it."""

    origin: str
    op: str  # create | update | delete
    id: str


@runtime_checkable
class ChangeFeed(Protocol):
    """A store whose other writers can be heard (PostgreSQL; SQLite has none)."""

    def watch_changes(
        self, on_change: Callable[[StoreChange], None], on_connected: Callable[[], None]
    ) -> ChangeListener:
        """A not-yet-started :class:`ChangeListener` for the writes others commit."""


def change_payload(origin: str, op: str, integration_id: str) -> str:
    """The ``NOTIFY`` payload of a write (ids are at most 63 characters: far below the
    8,000-byte limit of a payload)."""
    return json.dumps({"origin": origin, "op": op, "id": integration_id}, separators=(",", ":"))


def _parse(payload: str) -> StoreChange | None:
    try:
        data = json.loads(payload)
        return StoreChange(str(data["origin"]), str(data["op"]), str(data["id"]))
    except (ValueError, TypeError, KeyError):
        return None


class ChangeListener:
    """LISTEN on :data:`CHANNEL` over a connection of its own, reconnecting when lost.

    ``on_change`` gets every change another origin committed (``origin``'s own writes are
    already in its view); ``on_connected`` runs after each connection, the first included.
    Both are plain callbacks: they should only schedule work.
    """

    def __init__(
        self,
        connect: Connect,
        *,
        origin: str,
        on_change: Callable[[StoreChange], None],
        on_connected: Callable[[], None],
        where: str = "PostgreSQL",
        backoff_s: tuple[float, float] = (0.2, 5.0),
        keepalive_s: float = 5.0,
    ) -> None:
        self._connect = connect
        self.origin = origin
        self.on_change = on_change
        self.on_connected = on_connected
        self.where = where
        self.backoff_s = backoff_s
        self.keepalive_s = keepalive_s
        self.connected = False
        self.pid: int | None = None
        self.reconnects = 0
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self._first = asyncio.Event()

    def state(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "pid": self.pid,
            "reconnects": self.reconnects,
            "last_error": self.last_error,
        }

    async def start(self, first_attempt_s: float = 5.0) -> None:
        """Start listening; wait (bounded) for the first attempt, so a replica that can
        reach its database says it listens from its first answer on."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="registry-change-listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first.wait(), first_attempt_s)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self.connected = False

    async def _run(self) -> None:
        delay = self.backoff_s[0]
        while True:
            try:
                await self._listen()
            except Exception as exc:  # any failure: not listening; try again later
                if self.last_error is None:  # it was up (or never tried): start over
                    delay = self.backoff_s[0]
                self._lost_with(exc)
            finally:
                self._first.set()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.backoff_s[1])

    async def _listen(self) -> None:
        """One connection's life: connect, LISTEN, serve until it is lost."""
        conn = await self._connect()
        try:
            self._lost.clear()
            conn.add_termination_listener(self._terminated)
            await conn.add_listener(CHANNEL, self._notified)
            if self.pid is not None:
                self.reconnects += 1
            self.pid = conn.get_server_pid()
            self.connected, self.last_error = True, None
            self._first.set()
            log.info(
                "listening for other replicas' registry changes",
                extra={"channel": CHANNEL, "pid": self.pid, "reconnects": self.reconnects},
            )
            self.on_connected()
            await self._until_lost(conn)
        finally:
            self.connected = False
            conn.remove_termination_listener(self._terminated)
            with contextlib.suppress(Exception):
                await conn.close(timeout=1.0)
        raise ConnectionError("the connection was closed")

    async def _until_lost(self, conn: asyncpg.Connection) -> None:
        """Return when the connection is gone; a keepalive query finds a half-open one."""
        while not self._lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), self.keepalive_s)
            if not self._lost.is_set():
                await conn.execute("SELECT 1", timeout=self.keepalive_s)

    def _lost_with(self, exc: BaseException) -> None:
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if self.last_error is None:  # once per outage, not once per attempt
            log.warning(
                "the registry change listener is not connected: other replicas' changes "
                "are not heard until it is back (then the whole registry is re-read)",
                extra={"where": self.where, "error": detail},
            )
        self.connected, self.last_error = False, detail

    def _terminated(self, conn: asyncpg.Connection) -> None:
        self._lost.set()

    def _notified(self, conn: asyncpg.Connection, pid: int, channel: str, payload: str) -> None:
        change = _parse(payload)
        if change is None:
            log.warning("unreadable registry change notification", extra={"payload": payload})
            change = StoreChange(origin="", op="unknown", id="")
        if change.origin != self.origin:
            self.on_change(change)
