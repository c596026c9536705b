"""The SQLite store's WAL is checkpointed in the background, never inside a commit."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from control_plane.store.sqlite import SqliteStore
from tests.integration.test_store.samples import doc


def _wal_frames(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return (wal.stat().st_size - 32) // (4096 + 24) if wal.exists() else 0


async def test_commits_only_append_and_the_background_task_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite3"
    store = SqliteStore(path, checkpoint_interval=3600)  # no background round in this part
    await store.open()
    try:
        assert store._conn is not None
        assert store._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        for n in range(300):  # past SQLite's automatic threshold of 1,000 pages
            await store.create(f"int-{n:03d}", doc(f"int-{n:03d}", padding="x" * 12_000))
        frames = _wal_frames(path)
        assert frames > 1000  # no commit checkpointed the log
        busy, logged, done = await store.checkpoint()
        assert busy == 0 and logged == done >= frames - 10
        # the database file itself now holds the rows: a reader without the WAL sees them
        copy = tmp_path / "copy.sqlite3"
        copy.write_bytes(path.read_bytes())
        with sqlite3.connect(copy) as conn:
            assert conn.execute("SELECT count(*) FROM integrations").fetchone()[0] == 300
    finally:
        await store.close()


async def test_the_loop_checkpoints_on_its_interval_and_close_stops_it(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "registry.sqlite3", checkpoint_interval=0.05)
    await store.open()
    await store.create("a", doc("a"))
    for _ in range(100):
        if store.checkpoints >= 2:
            break
        await asyncio.sleep(0.05)
    assert store.checkpoints >= 2
    await store.close()
    after = store.checkpoints
    await asyncio.sleep(0.2)
    assert store.checkpoints == after
    await store.open()  # reopens with its checkpointer, the data intact
    assert (await store.get("a")) is not None
    await store.close()


async def test_concurrent_opens_make_one_checkpointer(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "registry.sqlite3", checkpoint_interval=0.05)
    await asyncio.gather(store.open(), store.open())
    await store.close()
    after = store.checkpoints
    await asyncio.sleep(0.3)
    assert store.checkpoints == after  # no checkpointer left running on the closed store


async def test_close_waits_for_a_checkpoint_in_progress(tmp_path: Path) -> None:
    progress: list[str] = []

    class Slow(SqliteStore):
        def _checkpoint(self) -> tuple[int, int, int]:
            progress.append("started")
            time.sleep(0.3)
            result = super()._checkpoint()
            progress.append("finished")
            return result

    store = Slow(tmp_path / "registry.sqlite3", checkpoint_interval=0.01)
    await store.open()
    for _ in range(100):
        if progress:
            break
        await asyncio.sleep(0.01)
    assert progress == ["started"]  # running in its worker thread
    await store.close()
    assert progress == ["started", "finished"]  # close returned only after it


async def test_a_failing_checkpoint_is_logged_and_the_loop_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0

    class Failing(SqliteStore):
        def _checkpoint(self) -> tuple[int, int, int]:
            nonlocal calls
            calls += 1
            raise OSError("disk gone")

    store = Failing(tmp_path / "registry.sqlite3", checkpoint_interval=0.02)
    await store.open()
    for _ in range(100):
        if calls >= 3:
            break
        await asyncio.sleep(0.02)
    await store.close()
    assert calls >= 3
    assert "SQLite checkpoint failed" in caplog.text
