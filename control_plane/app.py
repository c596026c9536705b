"""Wiring and lifecycle: ``create_app(settings)`` builds the aiohttp application.

Background work lives in ``cleanup_ctx`` generators (aiohttp ``examples/background_tasks``)
so start-up and shutdown run in a fixed order and nothing happens at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator

from aiohttp import web

from control_plane.api import health
from control_plane.api.keys import REGISTRY, SETTINGS, STORE
from control_plane.observability.logging import configure_logging
from control_plane.registry.service import RegistryService
from control_plane.settings import Settings
from control_plane.store.factory import create_store
from control_plane.store.protocol import RegistryStore

__all__ = ["create_app", "run_service"]

log = logging.getLogger(__name__)


async def _registry_ctx(app: web.Application) -> AsyncIterator[None]:
    store = app[STORE]
    await store.open()
    registry = app[REGISTRY]
    await registry.start()
    watcher = asyncio.create_task(registry.watch_file(), name="integrations-file-watch")
    yield
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    await store.close()


def create_app(settings: Settings, *, store: RegistryStore | None = None) -> web.Application:
    app = web.Application()
    app[SETTINGS] = settings
    app[STORE] = store or create_store(settings.postgresql_url, settings.data_dir)
    app[REGISTRY] = RegistryService(
        app[STORE],
        integrations_file=settings.integrations_file,
        rate_limits_file=settings.rate_limits_file,
        port_range=settings.listen_port_range,
    )
    app.cleanup_ctx.append(_registry_ctx)
    app.add_routes(health.routes)
    return app


async def run_service(settings: Settings, *, with_envoy: bool = True) -> int:
    """Serve until SIGTERM/SIGINT; SIGHUP re-reads the integrations file."""
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    log.info("integration service started", extra={"settings": settings.describe()})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(
        signal.SIGHUP, lambda: asyncio.ensure_future(app[REGISTRY].reload_file(force=True))
    )
    await stop.wait()
    log.info("shutting down")
    await runner.cleanup()
    return 0
