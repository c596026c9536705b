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
and writes them every ``--file-flush-interval-msec`` (10 s by default); a reader that needs
current numbers asks Envoy to flush first (admin ``POST /reopen_logs``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CacheCounts", "CacheLedger"]

HIT = "cache.response_from_cache_filter"
STORED_MISS = "cache.insert_via_upstream"


@dataclass(slots=True)
class CacheCounts:
    hits: int = 0
    misses: int = 0
    stored: int = 0
    bypassed: int = 0
    requests: int = 0
    offset: int = 0
    partial: bytes = field(default=b"", repr=False)


class CacheLedger:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._counts: dict[str, CacheCounts] = {}

    def counts(self, integration_id: str) -> CacheCounts:
        counts = self._counts.setdefault(integration_id, CacheCounts())
        path = self.directory / f"{integration_id}.log"
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return counts
        if size < counts.offset:  # truncated or rotated: start over
            self._counts[integration_id] = counts = CacheCounts()
        with path.open("rb") as handle:
            handle.seek(counts.offset)
            chunk = handle.read()
        counts.offset += len(chunk)
        data = counts.partial + chunk
        lines = data.split(b"\n")
        counts.partial = lines.pop()  # an unfinished last line waits for the next read
        for line in lines:
            if not line.strip():
                continue
            try:
                details = str(json.loads(line).get("response_code_details", ""))
            except ValueError:
                continue
            counts.requests += 1
            if details == HIT:
                counts.hits += 1
            else:
                counts.misses += 1
                if details == STORED_MISS:
                    counts.stored += 1
                else:
                    counts.bypassed += 1
        return counts
