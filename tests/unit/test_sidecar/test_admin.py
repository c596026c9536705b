"""EnvoyAdmin against a loopback server answering with Envoy's JSON shapes.

The documents below were taken from Envoy 1.40's admin API (an outlier-ejected host added
by hand); the real Envoy is exercised in tests/e2e/test_sidecar.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from control_plane.sidecar.admin import EnvoyAdmin, EnvoyAdminError
from tests.support.ports import free_port

CLUSTERS: dict[str, Any] = {
    "cluster_statuses": [
        {
            "name": "stripe",
            "added_via_api": True,
            "host_statuses": [
                {
                    "address": {"socket_address": {"address": "10.0.0.1", "port_value": 443}},
                    "stats": [
                        {"value": "7", "name": "rq_error"},
                        {"name": "rq_success"},
                        {"type": "GAUGE", "value": "2", "name": "cx_active"},
                    ],
                    "health_status": {
                        "failed_outlier_check": True,
                        "eds_health_status": "HEALTHY",
                    },
                    "success_rate": {"value": 12.5},
                    "weight": 1,
                    "hostname": "api.stripe.com",
                },
                {
                    "address": {"socket_address": {"address": "10.0.0.2", "port_value": 443}},
                    "health_status": {"eds_health_status": "HEALTHY"},
                    "weight": 1,
                },
            ],
            "circuit_breakers": {
                "thresholds": [
                    {"max_connections": 64, "max_pending_requests": 32, "max_requests": 128},
                    {"priority": "HIGH", "max_connections": 1024, "max_retries": 3},
                ]
            },
            "observability_name": "stripe",
        }
    ]
}

STATS: dict[str, Any] = {
    "stats": [
        {"name": "cluster_manager.cds.version_text", "value": ""},
        {"name": "server.live", "value": 1},
        {"name": "cluster.stripe.upstream_rq_total", "value": 42},
        {
            "histograms": {
                "supported_quantiles": [50, 99],
                "computed_quantiles": [
                    {
                        "name": "cluster.stripe.upstream_rq_time",
                        "values": [
                            {"cumulative": 3.5, "interval": None},
                            {"cumulative": 9.9, "interval": None},
                        ],
                    }
                ],
            }
        },
    ]
}


class FakeAdmin:
    def __init__(self) -> None:
        self.live = False
        self.drains: list[str] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/ready", self.ready)
        app.router.add_get("/clusters", self.clusters)
        app.router.add_get("/stats", self.stats)
        app.router.add_get("/stats/prometheus", self.prometheus)
        app.router.add_get("/config_dump", self.config_dump)
        app.router.add_post("/drain_listeners", self.drain)
        return app

    async def ready(self, request: web.Request) -> web.Response:
        return web.Response(
            text="LIVE" if self.live else "PRE_INITIALIZING", status=200 if self.live else 503
        )

    async def clusters(self, request: web.Request) -> web.Response:
        assert request.query.get("format") == "json"
        return web.json_response(CLUSTERS)

    async def stats(self, request: web.Request) -> web.Response:
        assert request.query.get("format") == "json"
        return web.json_response(STATS)

    async def prometheus(self, request: web.Request) -> web.Response:
        return web.Response(text="# TYPE envoy_server_live gauge\nenvoy_server_live{} 1\n")

    async def config_dump(self, request: web.Request) -> web.Response:
        return web.json_response({"query": dict(request.query)})

    async def drain(self, request: web.Request) -> web.Response:
        self.drains.append(request.query_string)
        return web.Response(text="OK\n")


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeAdmin, str]]:
    fake = FakeAdmin()
    runner = web.AppRunner(fake.app())
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield fake, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_clusters_are_typed_with_health_flags(fake: tuple[FakeAdmin, str]) -> None:
    async with EnvoyAdmin(fake[1]) as admin:
        clusters = await admin.clusters()
    stripe = clusters["stripe"]
    assert stripe.added_via_api
    ejected, healthy = stripe.hosts
    assert ejected.address == "10.0.0.1:443"
    assert ejected.health_flags == ("FAILED_OUTLIER_CHECK",)
    assert not ejected.healthy
    assert ejected.stats == {"rq_error": 7, "rq_success": 0, "cx_active": 2}
    assert ejected.success_rate == 12.5
    assert ejected.hostname == "api.stripe.com"
    assert healthy.healthy and healthy.success_rate is None
    default, high = stripe.circuit_breakers
    assert (default.priority, default.max_connections, default.max_retries) == ("DEFAULT", 64, None)
    assert (high.priority, high.max_connections) == ("HIGH", 1024)


async def test_stats_flatten_counters_and_gauges(fake: tuple[FakeAdmin, str]) -> None:
    async with EnvoyAdmin(fake[1]) as admin:
        stats = await admin.stats()
        histograms = await admin.histograms()
        prometheus = await admin.stats_prometheus()
    assert stats == {"server.live": 1, "cluster.stripe.upstream_rq_total": 42}
    assert histograms == {"cluster.stripe.upstream_rq_time": {"P50": 3.5, "P99": 9.9}}
    assert "envoy_server_live" in prometheus


async def test_ready_follows_status_code(fake: tuple[FakeAdmin, str]) -> None:
    state, url = fake
    async with EnvoyAdmin(url) as admin:
        assert await admin.ready() is False
        state.live = True
        assert await admin.ready() is True


async def test_config_dump_and_drain_parameters(fake: tuple[FakeAdmin, str]) -> None:
    state, url = fake
    async with EnvoyAdmin(url) as admin:
        dump = await admin.config_dump("dynamic_active_clusters", include_eds=True)
        await admin.drain_listeners()
        await admin.drain_listeners(graceful=False)
    assert dump["query"] == {"resource": "dynamic_active_clusters", "include_eds": ""}
    assert state.drains == ["graceful", ""]


async def test_unreachable_admin_raises_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with EnvoyAdmin(url, timeout=1.0) as admin:
        with pytest.raises(EnvoyAdminError, match="failed"):
            await admin.stats()


async def test_unexpected_status_raises(fake: tuple[FakeAdmin, str]) -> None:
    async with EnvoyAdmin(fake[1]) as admin:
        with pytest.raises(EnvoyAdminError, match="404"):
            await admin.server_info()
