"""Poll until a condition holds, instead of sleeping for a guessed time."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

__all__ = ["wait_until"]


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]],
    *,
    deadline_s: float = 10.0,
    interval_s: float = 0.05,
    message: str = "condition",
) -> None:
    """Call *predicate* (sync or async) until it returns true.

    Exceptions raised by the predicate count as "not yet"; the last one is chained to the
    ``TimeoutError`` raised after *deadline_s*.
    """
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    last_error: Exception | None = None
    while True:
        try:
            result = predicate()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
        except Exception as exc:
            last_error = exc
        if loop.time() >= end:
            raise TimeoutError(f"{message} not met within {deadline_s}s") from last_error
        await asyncio.sleep(interval_s)
