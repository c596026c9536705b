"""Wiring of the fleet membership (``scope: fleet`` rate limits): this replica's heartbeat
and the fleet sizes the pipeline serves as the local cluster's EDS."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
from collections import Counter
from collections.abc import AsyncIterator, Iterator

from aiohttp import web
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from control_plane.discovery.membership import FleetMembership
from control_plane.keys import (
    EVENTS,
    MEMBERSHIP,
    METRICS,
    PIPELINE,
    REGISTRY,
    SETTINGS,
    XDS_CACHE,
)

__all__ = ["MembershipCollector", "install_membership", "member_id"]


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

    def counters() -> dict[str, tuple[float, float]]:
        """This pod's Envoy counters of its fleet-scoped integrations (the stats watcher's
        last read): none in the shared topology, whose Envoys are in other pods."""
        events = app.get(EVENTS)
        if events is None or settings.topology == "shared":
            return {}
        sample = events.watcher.last_sample
        out = {}
        for item in app[REGISTRY].view.enabled():
            rl = item.policies.rate_limit
            if rl is None or rl.scope != "fleet":
                continue
            prefix = f"{item.id}.http_local_rate_limit."
            out[item.id] = (
                sample.get(prefix + "ok", 0.0),
                sample.get(prefix + "rate_limited", 0.0),
            )
        return out

    def availability(up: bool, error: str | None) -> None:
        """Fleet-scoped integrations keep limiting (Envoy's buckets) at the last sizes
        while Redis is away: an event per integration says so, and when it is back."""
        events = app.get(EVENTS)
        if events is None:
            return
        kind = "available" if up else "unavailable"
        for item in app[REGISTRY].view.enabled():
            rl = item.policies.rate_limit
            if rl is None or rl.scope != "fleet":
                continue
            data = {
                "id": item.id,
                "scope": "fleet",
                "source": "redis",
                "error": error,
                "effect": "fleet sizes follow membership again"
                if up
                else "the last fleet sizes stay in force; limiting continues",
            }
            events.publisher.emit_soon(
                f"integration.rate_limit_{kind}", data, tenant=item.tenant, subject=item.id
            )

    app[MEMBERSHIP] = FleetMembership(
        settings.redis_url,
        fleet=settings.fleet_name,
        member=member_id(str(settings.data_dir.resolve())),
        local_nodes=local_nodes,
        on_change=app[PIPELINE].set_fleet_members,
        counters=counters,
        on_availability=availability,
        interval_s=settings.fleet_heartbeat_interval,
        ttl_s=settings.fleet_heartbeat_ttl,
    )
    app.cleanup_ctx.append(_membership_ctx)
    metrics = app.get(METRICS)
    if metrics is not None:
        metrics.registry.register(MembershipCollector(app[MEMBERSHIP]))


class MembershipCollector(Collector):
    """The fleet's sizes and whether the membership source answers, at scrape time."""

    def __init__(self, membership: FleetMembership) -> None:
        self._membership = membership

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        status = self._membership.status
        up = GaugeMetricFamily(
            "integration_service_fleet_membership_up",
            "1 while the fleet membership source (Redis) answers; 0: the last sizes stay "
            "in force (no Redis configured counts as 0: each pod is its own fleet)",
        )
        up.add_metric([], 1.0 if status.connected else 0.0)
        yield up
        size = GaugeMetricFamily(
            "integration_service_fleet_members",
            "Live members of the fleet (pods; per workload in the shared topology) that "
            "divide a scope: fleet bucket",
            labels=["workload"],
        )
        size.add_metric([""], float(status.pods))
        for name, count in sorted(status.workloads.items()):
            size.add_metric([name], float(count))
        yield size
