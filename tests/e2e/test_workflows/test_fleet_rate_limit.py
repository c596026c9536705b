"""``scope: fleet`` with real Envoys: three pods (control plane + Envoy each) on one Redis
share one bucket through Envoy's local_cluster_rate_limit and the membership EDS.

Each pod is driven at twice its share; the upstream sees the fleet's quota, not three
times it. A pod that dies leaves the count within the heartbeat bound, and the two left
take its share: the total stays in the band.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from control_plane.sidecar.supervisor import EnvoySupervisor
from tests.e2e.faults.load import SteadyLoad
from tests.support.envoy import dynamic_listeners, running_envoy
from tests.support.ports import free_port
from tests.support.quota_load import hits_upstream, next_window, paced, registry_yaml
from tests.support.service import ServiceProcess
from tests.support.stack import running_stack
from tests.support.upstream import Upstream, running_upstream
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.envoy, pytest.mark.redis]

QUOTA = 30  # requests per second for the whole fleet
PER_POD_OFFERED = 20.0  # 2x a pod's share of 10/s with three pods
HEARTBEAT_S, TTL_S = 0.5, 1.5  # faster than the defaults (2 s, 6 s) to keep the test short
# A dead member leaves the count within TTL + one beat; then one push.
LEAVE_BOUND_S = TTL_S + HEARTBEAT_S + 1.0


def _registry(upstream: Upstream, port: int) -> str:
    return (
        "integrations:\n"
        f"  - id: quota\n    kind: http\n    upstream: {upstream.url}\n"
        f"    listen_port: {port}\n"
        f"    policies:\n      rate_limit: {{requests: {QUOTA}, per: 1s, burst: {QUOTA},"
        " scope: fleet}\n"
    )


async def _fleet_size(envoy: EnvoySupervisor) -> int:
    async with envoy.admin() as admin:
        clusters = await admin.clusters()
    fleet = clusters.get("integration_fleet")
    return len(fleet.hosts) if fleet is not None else 0


async def _rate_limit(service: ServiceProcess) -> Any:
    async with aiohttp.ClientSession() as session:
        url = f"{service.base_url}/integrations/quota/rate-limit"
        async with session.get(url) as response:
            assert response.status == 200, await response.text()
            return await response.json()


async def _rate(upstream: Upstream, seconds: float) -> float:
    before = len(upstream.requests)
    await asyncio.sleep(seconds)
    return (len(upstream.requests) - before) / seconds


async def test_a_fleet_quota_holds_across_pods_and_follows_membership(
    tmp_path: Path, redis_url: str
) -> None:
    env = {
        "REDIS_URL": redis_url,
        "INTEGRATION_SERVICE_FLEET_NAME": f"e2e-{free_port()}",
        "INTEGRATION_SERVICE_FLEET_HEARTBEAT_INTERVAL": str(HEARTBEAT_S),
        "INTEGRATION_SERVICE_FLEET_HEARTBEAT_TTL": str(TTL_S),
    }
    async with running_upstream() as upstream, AsyncExitStack() as stack:
        pods: list[tuple[ServiceProcess, EnvoySupervisor, int]] = []
        for name in ("a", "b", "c"):
            xds_port, port = free_port(), free_port()
            envoy = await stack.enter_async_context(
                running_envoy(
                    tmp_path / f"envoy-{name}", node_id="e2e-node", xds_port=xds_port, delta=True
                )
            )
            assert envoy.admin_url is not None
            service = ServiceProcess(
                tmp_path / f"cp-{name}",
                _registry(upstream, port),
                env=env,
                xds_port=xds_port,
                envoy_admin_port=int(envoy.admin_url.rsplit(":", 1)[1]),
            )
            service.start()
            stack.callback(service.stop)
            pods.append((service, envoy, port))
        for service, _, _ in pods:
            await service.wait_ready()

        async def listening(envoy: EnvoySupervisor) -> bool:
            async with envoy.admin() as admin:
                return "quota" in dynamic_listeners(await admin.config_dump())

        for _, envoy, _ in pods:
            await wait_until(partial(listening, envoy), deadline_s=20, message="listener")

        async def sized(n: int, members: list[EnvoySupervisor]) -> bool:
            return all([await _fleet_size(e) == n for e in members])

        envoys = [e for _, e, _ in pods]
        await wait_until(lambda: sized(3, envoys), deadline_s=10, message="fleet of 3")

        loads = [
            SteadyLoad(
                f"http://127.0.0.1:{port}/q",
                count=100_000,
                interval_s=1 / PER_POD_OFFERED,
                deadline_s=16,
            )
            for _, _, port in pods
        ]
        for load in loads:
            await stack.enter_async_context(load)
        await asyncio.sleep(2.0)  # past the buckets' initial burst
        three = await _rate(upstream, 4.0)
        body = await _rate_limit(pods[0][0])
        assert body["scope"] == "fleet"
        assert body["share"]["members"] == 3 and body["share"]["fraction"] == round(1 / 3, 6)
        assert body["fleet"]["membership"] == {"source": "redis", "connected": True, "error": None}
        counters = body["fleet"]["counters"]
        assert counters["members"] == 3 and counters["allowed"] > 0 and counters["limited"] > 0

        # One pod dies: its control plane and its Envoy.
        (dead, dead_envoy, _), alive = pods[2], pods[:2]
        dead.kill()
        await dead_envoy.stop()
        killed_at = time.monotonic()
        survivors = [e for _, e, _ in alive]
        await wait_until(lambda: sized(2, survivors), deadline_s=15, message="fleet of 2")
        left_after = time.monotonic() - killed_at
        await asyncio.sleep(1.0)  # the survivors' buckets at their new share
        two = await _rate(upstream, 4.0)
        for load in loads[:2]:
            result = load.result
            assert result.sent > 0
        assert left_after <= LEAVE_BOUND_S + 1.0, f"the dead member left after {left_after:.1f}s"
    print(f"fleet: {three:.1f} req/s with 3 pods, {two:.1f} with 2; left after {left_after:.1f}s")
    # Within +10 % / -20 % of the fleet's quota, with three pods and with two.
    assert QUOTA * 0.8 <= three <= QUOTA * 1.1, f"{three:.1f} req/s with three pods"
    assert QUOTA * 0.8 <= two <= QUOTA * 1.1, f"{two:.1f} req/s with two pods"


async def test_each_tenant_is_held_to_its_own_fleet_quota(tmp_path: Path, redis_url: str) -> None:
    """Two pods; each tenant's bucket is divided among the fleet like the integration's."""
    quotas = {"acme": 10, "globex": 20}
    rule = (
        "{requests: 200, per: 1s, burst: 200, scope: fleet, tenant_header: x-tenant-id, "
        "per_tenant: {acme: {requests: 10, per: 1s, burst: 10}, "
        "globex: {requests: 20, per: 1s, burst: 20}}}"
    )
    env = {
        "REDIS_URL": redis_url,
        "INTEGRATION_SERVICE_FLEET_NAME": f"e2e-tenants-{free_port()}",
        "INTEGRATION_SERVICE_FLEET_HEARTBEAT_INTERVAL": str(HEARTBEAT_S),
        "INTEGRATION_SERVICE_FLEET_HEARTBEAT_TTL": str(TTL_S),
    }
    async with hits_upstream() as upstream, AsyncExitStack() as stack:
        pods = []
        for n in range(2):
            ports = {"tenanted": free_port()}
            registry = registry_yaml(upstream, ports, {"tenanted": rule})
            pods.append(
                await stack.enter_async_context(
                    running_stack(tmp_path / f"pod{n}", registry, env=env, ports=ports)
                )
            )

        async def fleet_of_two() -> bool:
            sizes = []
            for pod in pods:
                async with pod.envoy.admin() as admin:
                    fleet = (await admin.clusters()).get("integration_fleet")
                sizes.append(len(fleet.hosts) if fleet else 0)
            return sizes == [2, 2]

        await wait_until(fleet_of_two, deadline_s=15, message="fleet of 2")
        # Per pod, each tenant at twice its share (acme 5/s, globex 10/s of the pod's half).
        targets = [
            [(pod.sidecar("tenanted", "/"), "acme")]
            + [(pod.sidecar("tenanted", "/"), "globex")] * 2
            for pod in pods
        ]
        first = await next_window()
        await asyncio.gather(
            *(paced(pod.session, t, 30.0, 5.9) for pod, t in zip(pods, targets, strict=True))
        )
    for tenant, quota in quotas.items():
        counts = upstream.per_window(tenant)
        steady = [counts.get(first + k, 0) for k in range(2, 5)]  # past the initial bursts
        rate = sum(steady) / len(steady)
        assert quota * 0.8 <= rate <= quota * 1.1, (tenant, steady)
