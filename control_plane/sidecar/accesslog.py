"""Per-integration cache hits and misses, counted from Envoy's JSON access logs.

Envoy 1.40's ``cache_v2`` counts hits and misses only per cache *type* — shared by every
integration — but each access-log line carries ``%RESPONSE_CODE_DETAILS%``, set by the
filter from its lookup status (``cache_filter.cc``, ``responseCodeDetailsFromStatus``):

* ``cache.response_from_cache_filter`` — the cache answered: a hit, a revalidated entry, or
  a request that waited for a concurrent fill of the same key. Counted as a **hit**.
* ``cache.insert_via_upstream`` — a miss fetched through the cache's fill path and offered
  to the store (the store may still decline, e.g. ``no-store``). A **miss**, and ``stored``.
* anything else (``via_upstream``, local replies such as a 429) — the request never used
  the cache: a method or header that makes it uncacheable (``Authorization``, a body), or
  a lookup error. A **miss**, and ``bypassed``.

Each integration has its own log file, so its counts are its own. The file is read
incrementally (offset kept), so a poll costs only the new lines. Envoy buffers access logs
and writes them every ``--file-flush-interval-msec`` (10 s by default) or once 64 KiB are
buffered; a reader that needs current numbers asks Envoy to flush first (admin
``POST /reopen_logs``).

**Rotation** keeps each file under a cap (``access_log_max_bytes``) with the counts exact.
Envoy writes ``<id>.log`` through an open descriptor, so :meth:`CacheLedger.rotate_oversized`
reads the file to its end, renames it ``<id>.log.1`` and the caller asks Envoy to
``POST /reopen_logs``. Until Envoy reopens, its lines still land in the renamed file (same
inode), and the ledger keeps reading that one; Envoy's flush thread closes the old
descriptor *before* it creates the new ``<id>.log``, so once ``<id>.log`` exists again the
rotated file is complete: it is read to its end, its counts folded, and it is deleted. A
file is not rotated again while its previous rotation waits, so there is at most one
rotated file per integration. (Envoy reopens from the flush thread of a file, which starts
with the file's first line: a file Envoy has not written to since it started is reopened
only with its next line.)

The counts of deleted files are kept in ``<id>.counts.json`` beside the log, written before
the rotated file is deleted, so a restarted control plane counts what a previous run read
(and the inode of the rotated file they include, so a crash between the two steps does not
count that file twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["CacheCounts", "CacheLedger", "rotate_access_logs"]

logger = logging.getLogger(__name__)

HIT = "cache.response_from_cache_filter"
STORED_MISS = "cache.insert_via_upstream"

LOG_SUFFIX = ".log"
ROTATED_SUFFIX = ".log.1"
COUNTS_SUFFIX = ".counts.json"


@dataclass(slots=True)
class CacheCounts:
    hits: int = 0
    misses: int = 0
    stored: int = 0
    bypassed: int = 0
    requests: int = 0

    def count(self, details: str) -> None:
        self.requests += 1
        if details == HIT:
            self.hits += 1
        else:
            self.misses += 1
            if details == STORED_MISS:
                self.stored += 1
            else:
                self.bypassed += 1

    def __add__(self, other: CacheCounts) -> CacheCounts:
        return CacheCounts(
            self.hits + other.hits,
            self.misses + other.misses,
            self.stored + other.stored,
            self.bypassed + other.bypassed,
            self.requests + other.requests,
        )


@dataclass(slots=True)
class _Log:
    """What the ledger knows of one integration's log files."""

    #: Lines of the files already deleted (persisted in ``<id>.counts.json``).
    folded: CacheCounts
    #: Inode of the rotated file ``folded`` includes, while that file may still exist.
    folded_inode: int | None = None
    #: Lines read so far of the file being read: the rotated one while ``rotating``.
    current: CacheCounts = field(default_factory=CacheCounts)
    offset: int = 0
    partial: bytes = field(default=b"", repr=False)
    #: Renamed to ``<id>.log.1``; Envoy may still write there until it reopens ``<id>.log``.
    rotating: bool = False


class CacheLedger:
    """Cache counts per integration from ``<directory>/<id>.log``; thread-safe (one lock)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._logs: dict[str, _Log] = {}
        self._lock = threading.Lock()

    def counts(self, integration_id: str) -> CacheCounts:
        """Everything counted so far for the integration, its new lines read first."""
        with self._lock:
            log = self._log(integration_id)
            self._read(integration_id, log)
            return log.folded + log.current

    def rotate_oversized(self, max_bytes: int) -> list[str]:
        """Read every log; rename each one past *max_bytes* to ``<id>.log.1``.

        Returns the integrations whose rotation waits for Envoy to reopen its log (renamed
        now or earlier): the caller asks Envoy to ``POST /reopen_logs``, then calls
        :meth:`finish_rotations`.
        """
        with self._lock:
            waiting = []
            names = self._listing()
            for integration_id in self._on_disk(names):
                log = self._log(integration_id, names)
                self._read(integration_id, log)
                if not log.rotating and log.offset > max_bytes:
                    self._rename(integration_id, log)
                if log.rotating:
                    waiting.append(integration_id)
            return waiting

    def finish_rotations(self) -> list[str]:
        """Fold and delete every rotated file Envoy is done with; the ones still waiting."""
        with self._lock:
            waiting = []
            for integration_id, log in self._logs.items():
                if log.rotating:
                    self._read(integration_id, log)
                if log.rotating:
                    waiting.append(integration_id)
            return waiting

    # -- internals (called with the lock held) ------------------------------------------

    def _path(self, integration_id: str, suffix: str) -> Path:
        return self.directory / f"{integration_id}{suffix}"

    def _listing(self) -> frozenset[str]:
        """The directory's file names: one ``listdir`` answers, for every integration of a
        round, which of its files exist (at 1,000 integrations, probing each file instead
        held the event loop's GIL for 17-42 ms every round: issue 20)."""
        try:
            return frozenset(os.listdir(self.directory))
        except FileNotFoundError:
            return frozenset()

    @staticmethod
    def _on_disk(names: frozenset[str]) -> list[str]:
        found = {
            name.removesuffix(suffix)
            for name in names
            for suffix in (LOG_SUFFIX, ROTATED_SUFFIX)
            if name.endswith(suffix)
        }
        return sorted(found)

    def _log(self, integration_id: str, names: frozenset[str] | None = None) -> _Log:
        log = self._logs.get(integration_id)
        if log is None:
            log = self._logs[integration_id] = self._load(integration_id, names)
        return log

    def _load(self, integration_id: str, names: frozenset[str] | None = None) -> _Log:
        """The persisted counts, and what a previous run left mid-rotation. ``names``: the
        directory's listing, when the caller has one (a file it lacks is not probed)."""
        log = _Log(CacheCounts())
        if names is not None and names.isdisjoint(
            (integration_id + COUNTS_SUFFIX, integration_id + ROTATED_SUFFIX)
        ):
            return log  # neither file exists: nothing to load
        with contextlib.suppress(OSError, ValueError, TypeError):
            saved = json.loads(self._path(integration_id, COUNTS_SUFFIX).read_text("utf-8"))
            inode = saved.pop("rotated_inode", None)
            log = _Log(CacheCounts(**saved), inode if isinstance(inode, int) else None)
        rotated = self._path(integration_id, ROTATED_SUFFIX)
        with contextlib.suppress(FileNotFoundError):
            if rotated.stat().st_ino == log.folded_inode:
                rotated.unlink()  # already counted: the previous run stopped before deleting it
            else:
                log.rotating = True  # renamed by the previous run, not counted yet
        return log

    def _save(self, integration_id: str, folded: CacheCounts, inode: int | None) -> None:
        path = self._path(integration_id, COUNTS_SUFFIX)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({**asdict(folded), "rotated_inode": inode}), "utf-8")
        tmp.replace(path)  # atomic: a crash never leaves half the counts

    def _rename(self, integration_id: str, log: _Log) -> None:
        if log.folded_inode is not None:
            # The inode number of a deleted file can be reused by the file renamed next.
            self._save(integration_id, log.folded, None)
            log.folded_inode = None
        try:
            os.rename(
                self._path(integration_id, LOG_SUFFIX), self._path(integration_id, ROTATED_SUFFIX)
            )
        except FileNotFoundError:
            return  # removed meanwhile: nothing to rotate
        log.rotating = True

    def _read(self, integration_id: str, log: _Log) -> None:
        live = self._path(integration_id, LOG_SUFFIX)
        if log.rotating:
            rotated = self._path(integration_id, ROTATED_SUFFIX)
            # Checked before reading: once Envoy created the new file, it had closed the
            # rotated one, so reading that to its end now reads all of it.
            reopened = live.exists()
            self._consume(rotated, log)
            if not reopened:
                return
            self._fold(integration_id, log, rotated)
        try:
            size = os.stat(live).st_size
        except FileNotFoundError:
            return
        if size == log.offset:
            return  # nothing new (most files, most rounds): not even opened
        if size < log.offset:  # truncated by someone else: count the file afresh
            log.current, log.offset, log.partial = CacheCounts(), 0, b""
        self._consume(live, log)

    def _fold(self, integration_id: str, log: _Log, rotated: Path) -> None:
        """The rotated file is complete: its counts join ``folded``; then it is deleted."""
        folded = log.folded + log.current
        try:
            inode: int | None = rotated.stat().st_ino
        except FileNotFoundError:
            inode = None
        self._save(integration_id, folded, inode)
        rotated.unlink(missing_ok=True)
        log.folded, log.folded_inode = folded, inode
        log.current, log.offset, log.partial, log.rotating = CacheCounts(), 0, b"", False

    @staticmethod
    def _consume(path: Path, log: _Log) -> None:
        try:
            with path.open("rb") as handle:
                handle.seek(log.offset)
                chunk = handle.read()
        except FileNotFoundError:
            return
        log.offset += len(chunk)
        lines = (log.partial + chunk).split(b"\n")
        log.partial = lines.pop()  # an unfinished last line waits for the next read
        for line in lines:
            if not line.strip():
                continue
            try:
                details = str(json.loads(line).get("response_code_details", ""))
            except ValueError:
                continue
            log.current.count(details)


async def rotate_access_logs(
    ledger: CacheLedger,
    max_bytes: int,
    reopen_logs: Callable[[], Awaitable[None]],
    *,
    settle_s: float = 2.0,
    poll_s: float = 0.02,
) -> list[str]:
    """One round: rotate every log past *max_bytes*, have Envoy reopen its logs, fold the
    rotated files Envoy is done with (waiting up to *settle_s* for it). Returns the
    integrations whose rotation still waits (the next round asks Envoy again).

    *reopen_logs* is Envoy's admin ``POST /reopen_logs``; its errors propagate, the renamed
    files stay where they are (Envoy keeps writing there) and are counted all the same.
    """
    rotating = await asyncio.to_thread(ledger.rotate_oversized, max_bytes)
    if not rotating:
        return []
    await reopen_logs()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settle_s
    waiting = rotating
    while waiting and loop.time() < deadline:
        await asyncio.sleep(poll_s)
        waiting = await asyncio.to_thread(ledger.finish_rotations)
    done = [integration_id for integration_id in rotating if integration_id not in waiting]
    if done:
        logger.info("access logs rotated", extra={"integrations": done, "max_bytes": max_bytes})
    if waiting:
        logger.info("access logs not reopened by Envoy yet", extra={"integrations": waiting})
    return waiting
