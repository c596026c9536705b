"""The control plane is SIGKILLed while traffic flows through Envoy (PostgreSQL + Redis).

Envoy runs beside the control plane (``--no-envoy``, the Kubernetes layout) and keeps its
last good config when the xDS stream breaks; the restarted control plane computes the same
content-hash snapshot from the same registry, so Envoy has nothing to re-apply, and the
outbox, whose rows were marked sent, publishes nothing twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.faults.ledger import Figures
from tests.e2e.faults.load import SteadyLoad, latency_figures
from tests.e2e.faults.stack import Api, outbox_counts
from tests.e2e.faults.tap import tapping
from tests.support.envoy import dynamic_listeners, running_envoy
from tests.support.ports import free_port
from tests.support.service import ServiceProcess
from tests.support.upstream import running_upstream
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.envoy, pytest.mark.postgres, pytest.mark.redis]

LOAD_REQUESTS = 300
REGISTERED = 3


async def test_sigkill_under_load_zero_failures_same_version_no_duplicates(
    tmp_path: Path, postgres_database: str, redis_url: str, measure: Callable[[str], Figures]
) -> None:
    figures = measure("control_plane_sigkill")
    port = free_port()
    xds_port = free_port()
    async with (
        running_upstream() as upstream,
        running_envoy(
            tmp_path / "envoy", node_id="e2e-node", xds_port=xds_port, delta=True
        ) as envoy,
        tapping(redis_url) as tap,
    ):
        assert envoy.admin_url is not None
        service = ServiceProcess(
            tmp_path / "cp",
            f"integrations:\n  - id: orders\n    kind: http\n    upstream: {upstream.url}\n"
            f"    listen_port: {port}\n",
            env={"POSTGRESQL_URL": postgres_database, "REDIS_URL": redis_url},
            xds_port=xds_port,
            envoy_admin_port=int(envoy.admin_url.rsplit(":", 1)[1]),
        )
        service.start()
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
                api = Api(service, session)
                await service.wait_ready()
                for n in range(REGISTERED):
                    doc = {"id": f"svc-{n}", "kind": "http", "upstream": upstream.url}
                    created = await api.post("/integrations", doc)
                    assert created.status == 201, created
                await wait_until(
                    lambda: tap.delivered >= REGISTERED, deadline_s=10, message="events out"
                )
                await wait_until(
                    lambda: _drained(postgres_database), deadline_s=10, message="outbox drained"
                )
                ready = await service.wait_ready()
                version = ready["checks"]["config"]["version"]

                async with SteadyLoad(
                    f"http://127.0.0.1:{port}/steady", count=LOAD_REQUESTS, interval_s=0.01
                ) as load:
                    await wait_until(lambda: load.result.sent >= 50, message="load running")
                    service.kill()
                    killed_at = load.result.sent
                    await asyncio.sleep(1.0)  # traffic flows with no control plane at all
                    during_outage = load.result.sent - killed_at
                    service.start()
                    ready = await service.wait_ready()
                    restarted_at = load.result.sent
                    result = await load.wait()

                after = ready["checks"]["config"]["version"]
                async with envoy.admin() as admin:
                    listeners = dynamic_listeners(await admin.config_dump())
                # A mutation after the restart: its event goes out, nothing before it again.
                later = await api.post(
                    "/integrations", {"id": "after", "kind": "http", "upstream": upstream.url}
                )
                assert later.status == 201, later
                await wait_until(
                    lambda: tap.delivered >= REGISTERED + 1, deadline_s=10, message="new event"
                )
                await asyncio.sleep(1.0)  # room for a duplicate to show up, were there one
                produced, pending = await outbox_counts(postgres_database)
        finally:
            service.stop()

        figures.update(
            {
                "requests_sent": result.sent,
                "requests_failed": result.failed,
                "requests_while_down": during_outage,
                "requests_until_ready_again": restarted_at - killed_at,
                **latency_figures(result.latencies_ms),
                "version_before": version[:12],
                "version_after_restart": after[:12],
                "events_produced": produced,
                "events_delivered": tap.delivered,
                "duplicate_events": sum(n - 1 for n in tap.duplicates.values()),
                "events_pending": pending,
            }
        )
        assert result.sent == LOAD_REQUESTS
        assert result.failed == 0, result.errors[:5]
        assert after == version, "same registry, same snapshot version"
        assert set(listeners) == {"orders", "svc-0", "svc-1", "svc-2"}
        assert tap.duplicates == {}, "no event published twice"
        assert produced == REGISTERED + 1 == tap.delivered
        assert pending == 0


async def _drained(dsn: str) -> bool:
    return (await outbox_counts(dsn))[1] == 0
