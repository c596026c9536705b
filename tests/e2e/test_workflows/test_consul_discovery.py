"""A ``discovery: consul`` upstream follows the catalog into Envoy over EDS.

Real control plane (subprocess), real Envoy, a loopback Consul agent and two loopback
upstreams: moving the service from one instance to the other in Consul moves Envoy's
endpoint (``/clusters``) and the traffic through the sidecar.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from control_plane.discovery.consul import ConsulClient
from control_plane.sidecar.supervisor import EnvoySupervisor
from tests.support.consul import running_consul
from tests.support.ports import free_port
from tests.support.stack import running_stack
from tests.support.upstream import running_upstream
from tests.support.waiting import wait_until

pytestmark = pytest.mark.envoy


async def _hosts(envoy: EnvoySupervisor, cluster: str) -> list[str]:
    async with envoy.admin() as admin:
        clusters = await admin.clusters()
    return sorted(h.address for h in clusters[cluster].hosts) if cluster in clusters else []


async def test_consul_upstream_follows_endpoint_changes(tmp_path: Path) -> None:
    listen_port = free_port()
    registry = f"""
integrations:
  - id: catalog
    kind: http
    listen_port: {listen_port}
    upstream:
      host: catalog.service.consul
      port: 80
      scheme: http
      discovery: consul
      consul_service: catalog
"""
    async with (
        running_consul() as consul,
        running_upstream() as first,
        running_upstream() as second,
    ):
        client = ConsulClient("127.0.0.1", consul.port)
        await client.register(
            {"ID": "catalog-1", "Name": "catalog", "Address": "127.0.0.1", "Port": first.port}
        )
        env = {"CONSUL_HOST": "127.0.0.1", "CONSUL_PORT": str(consul.port)}
        try:
            async with running_stack(tmp_path, registry, env=env) as stack:

                async def has_hosts() -> bool:
                    return bool(await _hosts(stack.envoy, "catalog"))

                await wait_until(
                    has_hosts,
                    deadline_s=10,
                    message="first endpoint in Envoy",
                )
                assert await _hosts(stack.envoy, "catalog") == [f"127.0.0.1:{first.port}"]
                sidecar = f"http://127.0.0.1:{listen_port}/orders"
                async with stack.session.get(sidecar) as answer:
                    assert answer.status == 200
                assert first.requests and not second.requests

                await client.register(
                    {"ID": "catalog-2", "Name": "catalog", "Address": "127.0.0.1",
                     "Port": second.port}
                )  # fmt: skip
                await client.deregister("catalog-1")

                async def moved() -> bool:
                    return await _hosts(stack.envoy, "catalog") == [f"127.0.0.1:{second.port}"]

                await wait_until(moved, deadline_s=10, message="endpoint moved")
                async with stack.session.get(sidecar) as answer:
                    assert answer.status == 200
                assert second.requests, "traffic follows the catalog"
                assert consul.blocking_queries >= 1
        finally:
            await client.close()
        assert not any(s.startswith("integration-service-") for s in consul.services)
