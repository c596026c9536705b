"""Wiring of the shared topology (``topology: shared``): workloads, the TLS-gated xDS
server, readiness, and the housekeeping a fleet needs.

* The workloads file is loaded before the registry starts (an invalid file stops the
  start, as for the grants), and re-read every second: a change re-cuts the workload
  snapshots and closes connections whose certificate no longer names a workload.
* Readiness: a replica is ready when it can serve (``shared_config``, and the store
  reachable); nodes that lag are
  shown per integration (``GET /integrations/{id}/status``, its ``nodes`` block).
* The status of nodes disconnected for longer than ``node_status_retention`` is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from control_plane.api import health
from control_plane.keys import FLEET, PIPELINE, SETTINGS, STORE_HEALTH, XDS_CACHE
from control_plane.registry.workloads import WorkloadsFile
from control_plane.settings import Settings
from control_plane.xds.config_state import shared_config
from control_plane.xds.fleet import Fleet
from control_plane.xds.gate import TlsFiles

__all__ = ["create_fleet", "install_fleet"]

log = logging.getLogger(__name__)

WATCH_S = 1.0


def create_fleet(settings: Settings) -> Fleet:
    """The fleet of ``settings`` with its workloads file loaded (raises RegistryError)."""
    assert settings.xds_tls_cert and settings.xds_tls_key and settings.xds_client_ca
    workloads = WorkloadsFile(settings.workloads_file)
    workloads.load()
    files = TlsFiles(settings.xds_tls_cert, settings.xds_tls_key, settings.xds_client_ca)
    return Fleet(workloads, files, max_connections=settings.xds_max_connections)


async def _fleet_ctx(app: web.Application) -> AsyncIterator[None]:
    settings, fleet, pipeline = app[SETTINGS], app[FLEET], app[PIPELINE]
    fleet.on_new_workload = pipeline.apply_current
    port = await fleet.start(app[XDS_CACHE], settings.xds_host, settings.xds_port)
    log.info(
        "xDS server listening (TLS, client certificates required)",
        extra={
            "host": settings.xds_host,
            "port": port,
            "workloads": sorted(fleet.book.workloads),
        },
    )

    async def watch() -> None:
        while True:
            await asyncio.sleep(WATCH_S)
            try:
                if fleet.reload():
                    pipeline.apply_current()
                app[XDS_CACHE].status.forget_disconnected(settings.node_status_retention)
            except Exception:  # a watcher must never die
                log.exception("fleet housekeeping failed")

    watcher = asyncio.create_task(watch(), name="fleet-watch")
    yield
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    await fleet.stop()


async def _serving(app: web.Application) -> dict[str, object]:
    """Ready when it can serve: the configuration is built and the store reachable (a
    replica cut off from the store would serve what the others may have changed; its
    Envoys move to a replica that has it, and keep their configuration meanwhile)."""
    out = shared_config(app[XDS_CACHE], app[PIPELINE].state)
    if app[STORE_HEALTH].up is False:
        return {**out, "ok": False, "detail": "the store is unreachable"}
    return out


def install_fleet(app: web.Application) -> None:
    """Serve xDS through the TLS gate; readiness becomes "can serve"."""
    app.cleanup_ctx.append(_fleet_ctx)
    app[health.READINESS_CHECKS].clear()
    app[health.READINESS_CHECKS]["config"] = _serving
