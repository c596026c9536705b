"""Access logs stay bounded under load, and the cache counts read from them stay exact.

Real Envoy, the real control plane (``--no-envoy``), one cached integration, a small cap
(``INTEGRATION_SERVICE_ACCESS_LOG_MAX_BYTES``) and a short check interval. A few thousand
GETs go through the sidecar listener while a sampler stats every file of
``<data_dir>/access-logs`` every 20 ms. What is proved:

* no access-log file ever grows past the cap plus what Envoy wrote in one check interval
  (measured from the samples: the most bytes written, over every file, in any window one
  check interval long);
* at most one rotated file beside the live one, so the directory's bytes stay bounded;
* the cache endpoint's hits + misses equal the requests sent and its misses the requests
  the upstream saw, although most of the lines were in files rotated away meanwhile; and
  they are the same after the control plane was SIGKILLed and restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.e2e.faults.ledger import Figures
from tests.support.ports import free_port
from tests.support.stack import Stack, running_stack
from tests.support.upstream import running_upstream
from tests.support.waiting import wait_until

pytestmark = pytest.mark.envoy

CAP = 64 * 1024
CHECK_S = 0.5
REQUESTS = 4000
CONCURRENCY = 4
# Paced, so that the load lasts many check intervals (unpaced, loopback runs 5,000/s).
RATE_PER_S = 500
DISTINCT_PATHS = 400
SAMPLE_S = 0.02
# The control plane's check runs every CHECK_S plus the time the check itself takes (a
# read, a rename, Envoy's reopen): the window allows for that and two sampling periods.
WINDOW_S = CHECK_S + 0.25 + 2 * SAMPLE_S


@dataclass
class Samples:
    """``(time, {file name: (inode, size)})`` of the access-log directory, taken in turn."""

    directory: Path
    taken: list[tuple[float, dict[str, tuple[int, int]]]] = field(default_factory=list)

    def take(self) -> None:
        files: dict[str, tuple[int, int]] = {}
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.directory):
                with contextlib.suppress(FileNotFoundError):
                    st = entry.stat()
                    files[entry.name] = (st.st_ino, st.st_size)
        self.taken.append((time.monotonic(), files))

    async def run(self) -> None:
        while True:
            self.take()
            await asyncio.sleep(SAMPLE_S)

    def log_files(self) -> list[dict[str, int]]:
        """Per sample, the sizes of the access-log files (live and rotated) by name."""
        return [
            {name: size for name, (_, size) in files.items() if ".log" in name}
            for _, files in self.taken
        ]

    def written(self) -> list[tuple[float, int]]:
        """Bytes Envoy had written so far at each sample: every log inode ever seen, at the
        largest size seen (an inode gone, rotated and deleted, keeps its last size)."""
        largest: dict[int, int] = {}
        out = []
        for at, files in self.taken:
            for name, (inode, size) in files.items():
                if ".log" in name:
                    largest[inode] = max(largest.get(inode, 0), size)
            out.append((at, sum(largest.values())))
        return out

    def growth_per_check(self) -> int:
        """The most bytes written within any window of WINDOW_S."""
        series = self.written()
        most, start = 0, 0
        for at, total in series:
            while at - series[start][0] > WINDOW_S:
                start += 1
            most = max(most, total - series[start][1])
        return most


async def _drive(url: str, count: int) -> list[int]:
    """``count`` GETs over ``DISTINCT_PATHS`` paths, CONCURRENCY at a time, request n not
    before n / RATE_PER_S seconds; the statuses."""
    statuses: list[int] = []
    todo = iter(range(count))
    start = time.monotonic()
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=10)
    ) as session:

        async def worker() -> None:
            for n in todo:
                await asyncio.sleep(max(0.0, start + n / RATE_PER_S - time.monotonic()))
                async with session.get(f"{url}/items/{n % DISTINCT_PATHS}") as response:
                    await response.read()
                    statuses.append(response.status)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return statuses


async def _cache(s: Stack, at_least: int) -> dict[str, Any]:
    """The cache body once Envoy has flushed the lines of ``at_least`` requests."""
    body: dict[str, Any] = {}

    async def caught_up() -> bool:
        nonlocal body
        body = await s.get_json(s.api("/integrations/busy/cache"))
        return bool(body["hits"] + body["misses"] >= at_least)

    await wait_until(caught_up, deadline_s=20, interval_s=0.2, message="access log caught up")
    return body


async def test_access_logs_rotate_under_load_with_exact_cache_counts(
    tmp_path: Path, measure: Callable[[str], Figures]
) -> None:
    figures = measure("access_log_cap")
    port = free_port()
    env = {
        "INTEGRATION_SERVICE_ACCESS_LOG_MAX_BYTES": str(CAP),
        "INTEGRATION_SERVICE_ACCESS_LOG_CHECK_INTERVAL": str(CHECK_S),
    }
    async with running_upstream(cache_control="max-age=600") as upstream:
        busy = {"id": "busy", "kind": "http", "upstream": upstream.url, "listen_port": port}
        busy["policies"] = {"cache": {"enabled": True}}
        registry = yaml.safe_dump({"integrations": [busy]})
        async with running_stack(tmp_path, registry, env=env, ports={"busy": port}) as s:
            samples = Samples(tmp_path / "cp" / "data" / "access-logs")
            sampler = asyncio.create_task(samples.run())
            started = time.monotonic()
            try:
                statuses = await _drive(s.sidecar("busy"), REQUESTS)
                driven_s = time.monotonic() - started
                body = await _cache(s, REQUESTS)
                await asyncio.sleep(2 * CHECK_S)  # a check or two after the last request
            finally:
                sampler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sampler
            upstream_fetches = len(upstream.requests)

            # The folded counts outlive the control plane (they are kept in the data dir).
            s.service.kill()
            s.service.start()
            await s.service.wait_ready()
            after_restart = await _cache(s, REQUESTS)

    sizes = samples.log_files()
    largest_file = max(max(files.values(), default=0) for files in sizes)
    largest_dir = max(sum(size for _, size in files.values()) for _, files in samples.taken)
    most_files = max(len(files) for files in sizes)
    log_inodes = {
        inode
        for _, files in samples.taken
        for name, (inode, _) in files.items()
        if name.endswith(".log")
    }
    growth = samples.growth_per_check()
    written = samples.written()[-1][1]
    print(
        f"\nrequests={len(statuses)} in {driven_s:.1f}s ({len(statuses) / driven_s:.0f}/s); "
        f"access-log bytes written={written}; cap={CAP}; growth per check={growth}; "
        f"largest file={largest_file}; largest directory={largest_dir}; "
        f"most log files at once={most_files}; live log files={len(log_inodes)}; "
        f"samples={len(samples.taken)}; hits={body['hits']} misses={body['misses']} "
        f"upstream={upstream_fetches}; after restart: hits={after_restart['hits']} "
        f"misses={after_restart['misses']}"
    )
    figures.update(
        {
            "requests_sent": len(statuses),
            "requests_failed": sum(1 for status in statuses if status != 200),
            "access_log_bytes_written": written,
            "cap_bytes": CAP,
            "largest_file_bytes": largest_file,
            "largest_directory_bytes": largest_dir,
            "most_log_files_at_once": most_files,
            "cache_hits_plus_misses": body["hits"] + body["misses"],
            "counts_same_after_restart": (after_restart["hits"], after_restart["misses"])
            == (body["hits"], body["misses"]),
        }
    )
    assert statuses == [200] * REQUESTS
    assert written > 3 * (CAP + growth), "the load wrote far more than one capped file"
    assert largest_file <= CAP + growth, (largest_file, CAP, growth)
    assert most_files <= 2, "the live file and at most one rotated file"
    # Live + rotated file, each within the bound, plus the small counts files.
    assert largest_dir <= 2 * (CAP + growth) + 4096, largest_dir
    assert (body["hits"] + body["misses"], body["bypassed"]) == (REQUESTS, 0)
    assert body["misses"] == upstream_fetches >= DISTINCT_PATHS
    assert (after_restart["hits"], after_restart["misses"]) == (body["hits"], body["misses"])
