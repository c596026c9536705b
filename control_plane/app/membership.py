"""Wiring of the fleet membership (``scope: fleet`` rate limits): this replica's heartbeat
and the fleet sizes the pipeline serves as the local cluster's EDS."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
from collections import Counter
from collections.abc import AsyncIterator

from aiohttp import web

from control_plane.discovery.membership import FleetMembership
from control_plane.keys import MEMBERSHIP, PIPELINE, SETTINGS, XDS_CACHE

__all__ = ["install_membership", "member_id"]


def member_id(data_dir: str) -> str:
    """This replica in the heartbeats: its host (the pod name in Kubernetes) and its data
    directory (several replicas on one host in tests and on a VM)."""
    digest = hashlib.sha256(data_dir.encode()).hexdigest()[:8]
    return f"{socket.gethostname()}/{digest}"


async def _membership_ctx(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[MEMBERSHIP].run(), name="fleet-membership")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def install_membership(app: web.Application) -> None:
    """Call after the pipeline and xDS cache keys are set."""
    settings = app[SETTINGS]
    status = app[XDS_CACHE].status

    def local_nodes() -> dict[str, int]:
        counts: Counter[str] = Counter(
            node.workload for node in status.nodes() if node.connected and node.workload
        )
        return dict(counts)

    app[MEMBERSHIP] = FleetMembership(
        settings.redis_url,
        fleet=settings.fleet_name,
        member=member_id(str(settings.data_dir.resolve())),
        local_nodes=local_nodes,
        on_change=app[PIPELINE].set_fleet_members,
        interval_s=settings.fleet_heartbeat_interval,
        ttl_s=settings.fleet_heartbeat_ttl,
    )
    app.cleanup_ctx.append(_membership_ctx)
