"""A bounded constant-rate load through a sidecar port (shared by the token e2e tests and
``bench/tokens.py``)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import aiohttp

__all__ = ["constant_load"]


async def constant_load(
    url: str, *, rate: float, duration_s: float, concurrency: int = 20
) -> Counter[int]:
    """``rate`` requests per second for ``duration_s`` seconds (at most ``concurrency`` in
    flight); returns the count of each status (0: connection error). Half the requests
    carry the app's own placeholder ``Authorization``, which must never reach the vendor."""
    statuses: Counter[int] = Counter()
    gate = asyncio.Semaphore(concurrency)
    total = int(rate * duration_s)
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def one(i: int) -> None:
            headers = {"Authorization": "Bearer app-placeholder"} if i % 2 else {}
            async with gate:
                try:
                    async with session.get(url, headers=headers) as response:
                        await response.read()
                        statuses[response.status] += 1
                except (aiohttp.ClientError, TimeoutError):
                    statuses[0] += 1

        started = time.monotonic()
        tasks = []
        for i in range(total):
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return statuses
