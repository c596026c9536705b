"""Consul: the control plane registers and deregisters itself, and ``discovery: consul``
upstreams follow the catalog through blocking queries — against a loopback agent that
speaks Consul's HTTP API (``tests/support/consul.py``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from control_plane.discovery.consul import ConsulClient, ConsulDiscovery
from control_plane.registry.loader import integration_from_document
from control_plane.registry.view import RegistryView
from tests.support.consul import running_consul
from tests.support.service import ServiceProcess
from tests.support.waiting import wait_until


async def test_service_registers_and_deregisters(tmp_path: Path) -> None:
    async with running_consul() as consul:
        service = ServiceProcess(
            tmp_path / "cp",
            "integrations: []\n",
            env={"CONSUL_HOST": "127.0.0.1", "CONSUL_PORT": str(consul.port)},
        )
        service.start()
        try:
            await service.wait_http()
            await wait_until(lambda: bool(consul.services), deadline_s=10, message="registered")
            ((service_id, definition),) = consul.services.items()
            assert service_id.startswith("integration-service-")
            assert definition["ID"] == service_id
            assert definition["Name"] == "integration-service"
            assert definition["Port"] == service.port
            assert definition["Address"] == "127.0.0.1"
            assert "integration-service" in definition["Tags"]
            assert definition["Meta"]["version"] == "1.0.0"
            check = definition["Check"]
            assert check["HTTP"] == f"http://127.0.0.1:{service.port}/health/ready"
            assert (
                check["Interval"] and check["Timeout"] and check["DeregisterCriticalServiceAfter"]
            )
            async with aiohttp.ClientSession() as session, session.get(check["HTTP"]) as answer:
                # No Envoy here, so not ready: Consul's HTTP check counts 503 as critical.
                assert answer.status in (200, 503)
                assert "checks" in await answer.json()
        finally:
            # In a thread: the fake agent runs on this loop and must answer the deregistration.
            assert await asyncio.to_thread(service.stop) == 0, service.log()[-3000:]
        assert consul.services == {}, "deregistered on graceful shutdown"
        assert ("deregister", service_id) in consul.requests


def _view(*docs: dict[str, object]) -> RegistryView:
    items = {str(d["id"]): integration_from_document(d, source="registered") for d in docs}
    return RegistryView(items=items, generation=1)


async def test_discovery_follows_the_catalog() -> None:
    async with running_consul() as consul:
        client = ConsulClient("127.0.0.1", consul.port)
        seen: list[tuple[str, list[tuple[str, int]]]] = []
        discovery = ConsulDiscovery(client, lambda i, e: seen.append((i, list(e))), wait="5s")
        upstream = {"host": "payments.service.consul", "port": 443, "discovery": "consul"}
        view = _view(
            {"id": "payments", "kind": "http", "upstream": {**upstream, "consul_service": "pay"}}
        )
        try:
            await client.register(
                {"Name": "pay", "ID": "pay-1", "Address": "10.0.0.1", "Port": 8080}
            )
            await discovery.apply(view)
            await wait_until(lambda: seen == [("payments", [("10.0.0.1", 8080)])], message="first")

            await client.register(
                {"Name": "pay", "ID": "pay-2", "Address": "10.0.0.2", "Port": 8081}
            )
            await wait_until(lambda: len(seen) == 2, message="second instance")
            assert seen[-1] == ("payments", [("10.0.0.1", 8080), ("10.0.0.2", 8081)])

            # Not passing yet: a registered instance with a failing check stays out.
            await client.register(
                {
                    "Name": "pay",
                    "ID": "pay-3",
                    "Address": "10.0.0.3",
                    "Port": 1,
                    "Check": {"TTL": "10s"},
                }
            )
            await client.deregister("pay-1")
            await wait_until(lambda: seen[-1][1] == [("10.0.0.2", 8081)], message="removal")
            consul.set_check("pay-3", "passing")
            await wait_until(lambda: len(seen[-1][1]) == 2, message="check passing")

            # Unrelated writes wake the query (Consul's index is coarse) but change nothing.
            before = len(seen)
            await client.register({"Name": "other", "ID": "o-1", "Port": 1})
            await asyncio.sleep(0.3)
            assert len(seen) == before
            assert consul.blocking_queries >= 4, "long polls, not a busy loop"
            assert len(consul.requests) < 40

            await discovery.apply(_view())  # integration gone: its watch stops
            assert discovery.endpoints == {}
        finally:
            await discovery.stop()
            await client.close()
