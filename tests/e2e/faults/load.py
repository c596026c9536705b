"""A bounded background load through the sidecar: a fixed number of requests, a deadline.

Requests go out one after another at a steady pace (``interval_s``), each with its own
timeout, until ``count`` were sent or ``deadline_s`` passed; every outcome is kept so a
test can count failures and report latencies.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

__all__ = ["LoadResult", "SteadyLoad", "latency_figures", "timed_get"]


@dataclass
class LoadResult:
    statuses: list[int] = field(default_factory=list)  # 0: no HTTP answer (reset, timeout)
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return len(self.statuses)

    @property
    def failed(self) -> int:
        return sum(1 for s in self.statuses if s != 200)


def latency_figures(latencies_ms: list[float], prefix: str = "latency") -> dict[str, float]:
    if not latencies_ms:
        return {}
    ordered = sorted(latencies_ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        f"{prefix}_p50_ms": round(statistics.median(ordered), 1),
        f"{prefix}_p95_ms": round(p95, 1),
        f"{prefix}_max_ms": round(ordered[-1], 1),
    }


async def timed_get(
    session: aiohttp.ClientSession, url: str, *, timeout_s: float = 10.0
) -> tuple[int, float, str]:
    """``(status, milliseconds, error)``; status 0 when no HTTP answer came back."""
    started = time.monotonic()
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as answer:
            await answer.read()
            status, error = answer.status, ""
    except (aiohttp.ClientError, TimeoutError) as exc:
        status, error = 0, f"{type(exc).__name__}: {exc}"
    return status, (time.monotonic() - started) * 1000, error


class SteadyLoad:
    """``async with SteadyLoad(url, count=200):`` runs the load in the background."""

    def __init__(
        self,
        url: str,
        *,
        count: int,
        interval_s: float = 0.02,
        deadline_s: float = 30.0,
        timeout_s: float = 5.0,
    ) -> None:
        self.url = url
        self.count = count
        self.interval_s = interval_s
        self.deadline_s = deadline_s
        self.timeout_s = timeout_s
        self.result = LoadResult()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        end = time.monotonic() + self.deadline_s
        # A fresh connection per request: a kept-alive socket would hide a listener that
        # stopped accepting.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            while self.result.sent < self.count and time.monotonic() < end:
                status, ms, error = await timed_get(session, self.url, timeout_s=self.timeout_s)
                self.result.statuses.append(status)
                self.result.latencies_ms.append(ms)
                if status != 200:
                    self.result.errors.append(error or f"HTTP {status}")
                await asyncio.sleep(self.interval_s)

    @property
    def done(self) -> bool:
        return self._task is not None and self._task.done()

    async def wait(self) -> LoadResult:
        assert self._task is not None
        await self._task
        return self.result

    async def __aenter__(self) -> SteadyLoad:
        self._task = asyncio.create_task(self._run(), name="steady-load")
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self._task is not None
        if exc[0] is not None:
            self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
