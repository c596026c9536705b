"""A fake wall clock for the broker: time moves only when the test advances it."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["FakeClock"]


class FakeClock:
    def __init__(self, start: float = 1_000_000.0) -> None:
        self.t = start
        self._waiters: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self.t

    async def wait(self, delay: float, wake: asyncio.Event) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (self.t + max(0.0, delay), future)
        self._waiters.append(entry)
        woken: asyncio.Future[bool] = asyncio.ensure_future(wake.wait())
        pending: set[asyncio.Future[Any]] = {future, woken}
        try:
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            if entry in self._waiters:
                self._waiters.remove(entry)

    @staticmethod
    async def settle() -> None:
        for _ in range(50):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking every waiter whose deadline passes, in order."""
        end = self.t + seconds
        await self.settle()
        while True:
            due = [d for d, f in self._waiters if not f.done()]
            nearest = min(due, default=end)
            if nearest > end:
                break
            self.t = max(self.t, nearest)
            for deadline, future in list(self._waiters):
                if deadline <= self.t and not future.done():
                    future.set_result(None)
            await self.settle()
            if self.t >= end and not any(d <= self.t for d, f in self._waiters if not f.done()):
                break
        self.t = end
        await self.settle()
