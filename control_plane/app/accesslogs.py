"""The access-log cap: a background task that rotates the integrations' access logs.

Every ``access_log_check_interval`` seconds each ``<data_dir>/access-logs/<id>.log`` past
``access_log_max_bytes`` is rotated by the cache ledger, which folds its lines into the
cache counts first, and Envoy is asked to reopen its logs (``POST /reopen_logs``); see
:mod:`control_plane.sidecar.accesslog` for how the counts stay exact. ``access_log_max_bytes:
0`` turns the task off (the files then grow without bound).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from control_plane.keys import CACHE_LEDGER, PIPELINE, SETTINGS, SIDECAR
from control_plane.sidecar.accesslog import rotate_access_logs
from control_plane.sidecar.admin import EnvoyAdminError

__all__ = ["install_access_logs"]

log = logging.getLogger(__name__)


def install_access_logs(app: web.Application) -> None:
    """Add the rotation task; after Envoy's context, so it starts with Envoy up."""
    app.cleanup_ctx.append(_access_logs_ctx)


async def _access_logs_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if not settings.access_log_max_bytes or app[PIPELINE].access_log_dir is None:
        yield
        return
    task = asyncio.create_task(_rotate_forever(app), name="access-log-rotation")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _rotate_forever(app: web.Application) -> None:
    settings = app[SETTINGS]

    async def reopen_logs() -> None:
        async with app[SIDECAR].admin(timeout=2.0) as admin:
            await admin.reopen_logs()

    while True:
        await asyncio.sleep(settings.access_log_check_interval)
        try:
            await rotate_access_logs(app[CACHE_LEDGER], settings.access_log_max_bytes, reopen_logs)
        except EnvoyAdminError as exc:
            # Renamed files stay counted; the next round asks Envoy again.
            log.warning("access-log rotation: Envoy unreachable", extra={"error": str(exc)})
        except OSError:
            log.exception("access-log rotation failed")
