"""PostgreSQL change notifications: each committed integration write sends one ``NOTIFY``
in its own transaction (a refused write sends none), and :class:`ChangeListener` hears the
other writers' and reconnects when the server goes away and comes back."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from control_plane.store.notify import CHANNEL, ChangeFeed, ChangeListener, StoreChange
from control_plane.store.postgres import PostgresStore
from control_plane.store.protocol import ConflictError, NotFoundError
from control_plane.store.sqlite import SqliteStore
from tests.integration.test_store.samples import doc, event
from tests.support.postgres import PostgresUnavailable, find_bin_dir, running_postgres
from tests.support.waiting import wait_until

pytestmark = pytest.mark.postgres


@pytest.fixture
async def store(postgres_database: str) -> AsyncIterator[PostgresStore]:
    opened = PostgresStore(postgres_database)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


class Heard:
    """What a listener hands its owner."""

    def __init__(self) -> None:
        self.changes: list[StoreChange] = []
        self.connections = 0

    def change(self, change: StoreChange) -> None:
        self.changes.append(change)

    def connected(self) -> None:
        self.connections += 1


async def test_committed_writes_notify_once_refused_ones_never(
    store: PostgresStore, postgres_database: str
) -> None:
    payloads: list[dict[str, Any]] = []
    conn = await asyncpg.connect(postgres_database, timeout=10)
    try:
        await conn.add_listener(CHANNEL, lambda *args: payloads.append(json.loads(args[-1])))
        await store.create("stripe", doc("stripe"), [event("e1")])
        with pytest.raises(ConflictError):
            await store.create("stripe", doc("stripe"))  # rolled back: a duplicate id
        with pytest.raises(ConflictError):
            await store.update("stripe", doc("stripe", v=2), 7)  # rolled back: stale
        await store.update("stripe", doc("stripe", v=2), 1)
        with pytest.raises(NotFoundError):
            await store.delete("ghost")
        await store.delete("stripe")
        await wait_until(lambda: len(payloads) >= 3, message="three notifications")
        await asyncio.sleep(0.2)  # and no more arrive
    finally:
        await conn.close()
    assert payloads == [
        {"origin": store.origin, "op": op, "id": "stripe"} for op in ("create", "update", "delete")
    ]


async def test_listener_hears_other_writers_only(
    store: PostgresStore, postgres_database: str
) -> None:
    other = PostgresStore(postgres_database)
    await other.open()
    heard = Heard()
    listener = store.watch_changes(heard.change, heard.connected)
    await listener.start()
    try:
        assert listener.connected and heard.connections == 1
        await store.create("own", doc("own"))  # already in this process's view
        await other.create("theirs", doc("theirs"))
        await other.delete("theirs")
        await wait_until(lambda: len(heard.changes) == 2, message="the other writer's changes")
        assert heard.changes == [
            StoreChange(other.origin, "create", "theirs"),
            StoreChange(other.origin, "delete", "theirs"),
        ]
    finally:
        await listener.stop()
        await other.close()
    assert not listener.connected


async def test_sqlite_has_no_change_feed(tmp_path: Path, store: PostgresStore) -> None:
    assert isinstance(store, ChangeFeed)
    assert not isinstance(SqliteStore(tmp_path / "registry.sqlite3"), ChangeFeed)


async def test_listener_reconnects_when_postgres_comes_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    try:
        find_bin_dir()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    with running_postgres() as server:
        dsn = server.dsn()
        writer = PostgresStore(dsn, connect_timeout=2)
        await writer.open()
        heard = Heard()
        listener: ChangeListener = PostgresStore(dsn, connect_timeout=2).watch_changes(
            heard.change, heard.connected
        )
        listener.keepalive_s = 0.5
        await listener.start()
        try:
            assert listener.connected and heard.connections == 1
            with caplog.at_level(logging.WARNING, logger="control_plane.store.notify"):
                await asyncio.to_thread(server.stop)
                await wait_until(lambda: not listener.connected, message="listener sees it")
            warnings = [
                r
                for r in caplog.records
                if r.name == "control_plane.store.notify" and r.levelno == logging.WARNING
            ]
            assert len(warnings) == 1 and "not connected" in warnings[0].getMessage()
            assert listener.state()["last_error"]

            await asyncio.to_thread(server.start)  # same port
            await wait_until(lambda: listener.connected, deadline_s=15, message="reconnected")
            assert heard.connections == 2, "a reconnection asks for a full re-read"
            assert listener.reconnects == 1 and listener.last_error is None
            await wait_until(_creates(writer, "after"), deadline_s=15, message="writes again")
            await wait_until(lambda: [c.id for c in heard.changes] == ["after"])
        finally:
            await listener.stop()
            await writer.close()


def _creates(store: PostgresStore, ident: str) -> Any:
    async def attempt() -> bool:
        await store.create(ident, doc(ident))
        return True

    return attempt
