"""The cache ledger: counts from access-log lines, exact across rotations and restarts.

``FakeEnvoy`` writes the way Envoy's file access logger does: through a descriptor opened
with ``O_APPEND | O_CREAT``, which keeps writing to the renamed file until it is told to
reopen the path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from control_plane.problems import RegistryError
from control_plane.settings import load_settings
from control_plane.sidecar.accesslog import HIT, STORED_MISS, CacheLedger, rotate_access_logs


class FakeEnvoy:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    def write(self, details: str, n: int = 1, *, tail: bytes = b"") -> None:
        line = json.dumps({"integration": "x", "response_code_details": details}) + "\n"
        os.write(self.fd, line.encode() * n + tail)

    def reopen(self) -> None:
        os.close(self.fd)  # closed before the path is created again, as Envoy's flush thread
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    def close(self) -> None:
        os.close(self.fd)


def _totals(ledger: CacheLedger, ident: str = "orders") -> tuple[int, int, int, int]:
    c = ledger.counts(ident)
    return c.hits, c.misses, c.stored, c.bypassed


def _rotated(directory: Path, envoy: FakeEnvoy, hits: int) -> CacheLedger:
    """A ledger on *directory* after *hits* lines, one rotation and Envoy's reopen."""
    ledger = CacheLedger(directory)
    envoy.write(HIT, hits)
    assert ledger.rotate_oversized(max_bytes=1) == ["orders"]
    envoy.reopen()
    return ledger


@pytest.fixture
def envoy(tmp_path: Path) -> Iterator[FakeEnvoy]:
    writer = FakeEnvoy(tmp_path / "orders.log")
    yield writer
    writer.close()


def test_counts_kinds_and_waits_for_an_unfinished_line(tmp_path: Path, envoy: FakeEnvoy) -> None:
    ledger = CacheLedger(tmp_path)
    assert _totals(ledger, "none") == (0, 0, 0, 0)
    envoy.write(HIT, 3)
    envoy.write(STORED_MISS, tail=b'{"response_code_details": "via_up')
    assert _totals(ledger) == (3, 1, 1, 0)
    os.write(envoy.fd, b'stream"}\n')
    assert _totals(ledger) == (3, 2, 1, 1)
    assert ledger.counts("orders").requests == 5


def test_rotation_counts_lines_written_until_envoy_reopens(
    tmp_path: Path, envoy: FakeEnvoy
) -> None:
    ledger = CacheLedger(tmp_path)
    envoy.write(HIT, 10)
    assert ledger.rotate_oversized(max_bytes=10**6) == []  # under the cap: left alone
    assert ledger.rotate_oversized(max_bytes=100) == ["orders"]
    assert not envoy.path.exists() and (tmp_path / "orders.log.1").exists()

    envoy.write(STORED_MISS, 2)  # still the old descriptor: lands in orders.log.1
    assert _totals(ledger) == (10, 2, 2, 0)
    assert ledger.finish_rotations() == ["orders"], "Envoy has not reopened yet"
    # Not rotated again while the previous rotation waits: one rotated file at most.
    assert ledger.rotate_oversized(max_bytes=100) == ["orders"]
    assert sorted(p.name for p in tmp_path.glob("orders.log*")) == ["orders.log.1"]

    envoy.write(HIT, 1)  # written before the reopen, read after it
    envoy.reopen()
    envoy.write(HIT, 4)
    assert ledger.finish_rotations() == []
    assert not (tmp_path / "orders.log.1").exists()
    assert _totals(ledger) == (15, 2, 2, 0)
    envoy.write(HIT, 1)
    assert _totals(ledger) == (16, 2, 2, 0)


def test_the_api_read_also_completes_a_rotation(tmp_path: Path, envoy: FakeEnvoy) -> None:
    # The reopen as GET /integrations/{id}/cache asks for it, before the rotation's own.
    ledger = _rotated(tmp_path, envoy, 5)
    envoy.write(STORED_MISS)
    assert _totals(ledger) == (5, 1, 1, 0)
    assert not (tmp_path / "orders.log.1").exists()


def test_counts_survive_a_restart_and_a_crash_mid_rotation(
    tmp_path: Path, envoy: FakeEnvoy
) -> None:
    first = _rotated(tmp_path, envoy, 7)
    assert first.finish_rotations() == []
    envoy.write(STORED_MISS, 3)
    assert _totals(first) == (7, 3, 3, 0)
    # A new run reads the folded counts and the live file afresh.
    assert _totals(CacheLedger(tmp_path)) == (7, 3, 3, 0)

    # A run that died after renaming, before Envoy reopened: the next run counts that file.
    second = CacheLedger(tmp_path)
    second.rotate_oversized(max_bytes=1)
    envoy.write(HIT, 2)
    third = CacheLedger(tmp_path)
    assert _totals(third) == (9, 3, 3, 0)
    envoy.reopen()
    envoy.write(HIT)
    assert third.finish_rotations() == []
    assert not (tmp_path / "orders.log.1").exists()
    assert _totals(third) == (10, 3, 3, 0)


def test_a_rotated_file_already_folded_is_not_counted_twice(
    tmp_path: Path, envoy: FakeEnvoy
) -> None:
    ledger = _rotated(tmp_path, envoy, 4)
    rotated = tmp_path / "orders.log.1"
    kept = rotated.read_bytes()
    ledger.finish_rotations()
    # As if the run died between writing the counts and deleting the rotated file.
    rotated.write_bytes(kept)
    saved = json.loads((tmp_path / "orders.counts.json").read_text())
    saved["rotated_inode"] = rotated.stat().st_ino
    (tmp_path / "orders.counts.json").write_text(json.dumps(saved))
    assert _totals(CacheLedger(tmp_path)) == (4, 0, 0, 0)
    assert not rotated.exists()


def test_a_round_of_a_new_run_finds_what_the_previous_run_left(
    tmp_path: Path, envoy: FakeEnvoy
) -> None:
    """The round reads the directory once and probes only the files it lists: a previous
    run's folded counts and its rotated file are found that way, untouched logs cost
    nothing, and a log that grew after a round is read on the next."""
    first = _rotated(tmp_path, envoy, 5)
    assert first.finish_rotations() == []
    envoy.write(STORED_MISS, 2)
    (tmp_path / "orders.log").rename(tmp_path / "orders.log.1")  # died mid-rotation
    for ident in ("idle-a", "idle-b"):
        (tmp_path / f"{ident}.log").touch()
    second = CacheLedger(tmp_path)
    assert second.rotate_oversized(max_bytes=10**6) == ["orders"]
    envoy.reopen()
    envoy.write(HIT)
    assert second.rotate_oversized(max_bytes=10**6) == []
    assert _totals(second) == (6, 2, 2, 0)
    assert second.counts("idle-a").requests == 0
    with (tmp_path / "idle-a.log").open("ab") as idle:
        idle.write(json.dumps({"response_code_details": HIT}).encode() + b"\n")
    second.rotate_oversized(max_bytes=10**6)
    assert second.counts("idle-a").hits == 1
    assert _totals(CacheLedger(tmp_path)) == (6, 2, 2, 0)


def test_a_truncated_file_is_counted_afresh(tmp_path: Path, envoy: FakeEnvoy) -> None:
    ledger = CacheLedger(tmp_path)
    envoy.write(HIT, 3)
    assert _totals(ledger) == (3, 0, 0, 0)
    os.truncate(envoy.path, 0)
    envoy.write(STORED_MISS)
    assert _totals(ledger) == (0, 1, 1, 0)


async def test_one_round_rotates_reopens_and_folds(tmp_path: Path, envoy: FakeEnvoy) -> None:
    ledger = CacheLedger(tmp_path)
    envoy.write(HIT, 50)
    calls = 0

    async def reopen_logs() -> None:
        nonlocal calls
        calls += 1
        envoy.write(STORED_MISS)  # flushed into the old file just before the reopen
        envoy.reopen()

    assert await rotate_access_logs(ledger, 1000, reopen_logs, poll_s=0.001) == []
    assert calls == 1
    assert _totals(ledger) == (50, 1, 1, 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orders.counts.json", "orders.log"]
    assert await rotate_access_logs(ledger, 1000, reopen_logs) == [], "nothing over the cap"
    assert calls == 1


async def test_a_round_whose_reopen_fails_keeps_counting(tmp_path: Path, envoy: FakeEnvoy) -> None:
    ledger = CacheLedger(tmp_path)
    envoy.write(HIT, 50)

    async def unreachable() -> None:
        raise ConnectionError("admin down")

    with pytest.raises(ConnectionError):
        await rotate_access_logs(ledger, 1000, unreachable)
    envoy.write(HIT, 2)
    assert _totals(ledger) == (52, 0, 0, 0)

    async def reopen_logs() -> None:
        envoy.reopen()

    assert await rotate_access_logs(ledger, 1000, reopen_logs, poll_s=0.001) == []
    envoy.write(HIT)
    assert _totals(ledger) == (53, 0, 0, 0)


async def test_a_round_gives_up_waiting_after_settle(tmp_path: Path, envoy: FakeEnvoy) -> None:
    ledger = CacheLedger(tmp_path)
    envoy.write(HIT, 50)

    async def ignored() -> None:
        return None  # Envoy has not written this file since it started: no reopen yet

    assert await rotate_access_logs(ledger, 1000, ignored, settle_s=0.05, poll_s=0.01) == ["orders"]
    assert _totals(ledger) == (50, 0, 0, 0)


def test_the_cap_settings() -> None:
    settings = load_settings(
        {
            "INTEGRATION_SERVICE_ACCESS_LOG_MAX_BYTES": "65536",
            "INTEGRATION_SERVICE_ACCESS_LOG_CHECK_INTERVAL": "0.5",
        },
        Path("/nonexistent.yaml"),
    )
    assert (settings.access_log_max_bytes, settings.access_log_check_interval) == (65536, 0.5)
    default = load_settings({}, Path("/nonexistent.yaml"))
    assert default.access_log_max_bytes == 10 * 1024 * 1024
    for name, value in (("MAX_BYTES", "-1"), ("CHECK_INTERVAL", "0")):
        with pytest.raises(RegistryError):
            load_settings({f"INTEGRATION_SERVICE_ACCESS_LOG_{name}": value}, Path("/none.yaml"))
