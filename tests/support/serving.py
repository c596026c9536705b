"""Serve an aiohttp app of the test support (fakes, upstreams) on a free loopback port."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

__all__ = ["serving"]


@asynccontextmanager
async def serving(
    app: web.Application,
    *,
    host: str = "127.0.0.1",
    ssl_context: ssl.SSLContext | None = None,
    shutdown_timeout: float = 60.0,
) -> AsyncIterator[int]:
    """Run ``app`` on ``host`` at a port the system picks; yield the port, clean up after."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, 0, ssl_context=ssl_context).start()
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()
