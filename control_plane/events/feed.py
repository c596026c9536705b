"""A periodic producer shared by every subscriber: the status page's live stream.

While at least one subscriber is connected, one task calls ``produce`` every
``interval_s`` (sooner after :meth:`LiveFeed.poke`) and publishes the result as
``latest`` with a new ``version``; subscribers wait for a version newer than the one they
saw. With no subscriber nothing runs, so an idle page costs nothing, and ten open pages
cost one production per tick, not ten.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable

__all__ = ["LiveFeed"]

log = logging.getLogger(__name__)


class LiveFeed:
    def __init__(
        self,
        produce: Callable[[], Awaitable[object]],
        interval_s: float = 2.0,
        min_interval_s: float = 0.5,
    ) -> None:
        self.produce = produce
        self.interval_s = interval_s
        self.min_interval_s = min_interval_s
        self.latest: object | None = None
        self.version = 0
        self.produced_at = 0.0  # monotonic time of ``latest``
        self.subscribers = 0
        #: Set on shutdown: subscribers end their streams (an open stream would otherwise
        #: hold the server's graceful shutdown for its whole timeout).
        self.closed = False
        self._changed = asyncio.Condition()
        self._poked = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._warming: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def _stale(self, max_age_s: float) -> bool:
        return self.latest is None or time.monotonic() - self.produced_at > max_age_s

    async def current(self, max_age_s: float) -> object:
        """``latest`` when younger than ``max_age_s``, else a fresh production."""
        if self._stale(max_age_s):
            await self._run_once(max_age_s)
        return self.latest

    def warm(self) -> None:
        """Start the first production in the background, once (later ones are the
        subscribers' or :meth:`current`'s): a :meth:`current` soon after waits for it
        instead of producing a second one."""
        if self._warming is None and self.latest is None and not self.closed:
            self._warming = asyncio.create_task(self._warm(), name="live-feed-warm")

    async def _warm(self) -> None:
        try:
            await self.current(max_age_s=math.inf)
        except Exception:
            log.exception("live feed: the first production failed")

    async def _run_once(self, max_age_s: float | None = None) -> None:
        async with self._lock:  # one production at a time, whoever asks
            if max_age_s is not None and not self._stale(max_age_s):
                return  # made while this caller waited for the lock: one is enough
            value = await self.produce()
            self.latest, self.produced_at = value, time.monotonic()
            self.version += 1
        async with self._changed:
            self._changed.notify_all()

    def poke(self) -> None:
        """Produce soon (no earlier than ``min_interval_s`` after the last production)."""
        self._poked.set()

    async def _loop(self) -> None:
        while True:
            self._poked.clear()  # a poke from now on asks for the next production
            try:
                await self._run_once()
            except Exception:
                log.exception("live feed production failed")
            await asyncio.sleep(self.min_interval_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._poked.wait(), max(0.0, self.interval_s - self.min_interval_s)
                )

    async def wait_newer(self, seen: int, timeout_s: float) -> int:
        """The current version once it is newer than ``seen`` (or after ``timeout_s``)."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.version > seen or self.closed), timeout_s
                )
        return self.version

    def join(self) -> None:
        self.subscribers += 1
        if not self.closed and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._loop(), name="ui-live-feed")

    async def leave(self) -> None:
        self.subscribers -= 1
        if self.subscribers <= 0:
            self.subscribers = 0
            await self.stop()

    async def close(self) -> None:
        """No more productions; wake every subscriber so that it sees ``closed``."""
        self.closed = True
        await self.stop()
        async with self._changed:
            self._changed.notify_all()

    async def stop(self) -> None:
        if self.closed and self._warming is not None:
            warming, self._warming = self._warming, None
            warming.cancel()
            await asyncio.gather(warming, return_exceptions=True)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
