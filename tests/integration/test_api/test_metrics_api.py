"""``GET /metrics`` over a real aiohttp server (no Envoy): each app has its own registry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from adapters.probes.result import ProbeResult
from control_plane.app import create_app
from control_plane.keys import METRICS, PROBES, XDS_CACHE
from control_plane.xds.resources import CLUSTER, LISTENER
from tests.support.app import app_settings

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _app(tmp_path: Path) -> web.Application:
    settings = app_settings(tmp_path, auth="disabled")  # explicit: the API, not auth
    return create_app(settings, environ={})


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(_app(tmp_path))) as test_client:
        yield test_client


async def _scrape(client: TestClient[Any, Any]) -> Samples:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    samples: Samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def _value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def test_api_latency_is_labelled_by_route_template(client: TestClient[Any, Any]) -> None:
    for ident in ("stripe", "auth0", "nope"):
        await client.get(f"/integrations/{ident}")
    await client.get("/no/such/route")
    samples = await _scrape(client)
    name = "integration_service_api_request_duration_seconds_count"
    route = "/integrations/{integration_id}"
    assert _value(samples, name, route=route, method="GET", status="200") == 2
    assert _value(samples, name, route=route, method="GET", status="404") == 1
    assert _value(samples, name, route="<unmatched>", method="GET", status="404") == 1
    assert not any("/integrations/stripe" in dict(labels).get("route", "") for _, labels in samples)


async def test_registry_size_config_version_and_xds_counters(
    client: TestClient[Any, Any],
) -> None:
    app = client.app
    assert app is not None
    status = app[XDS_CACHE].status
    status.stream_opened("node-a", "delta")
    status.record_sent("node-a", CLUSTER, "v1", "n1")
    status.record_sent("node-a", CLUSTER, "v2", "n2")
    status.record_sent("node-a", LISTENER, "v1", "n3")
    status.record_ack("node-a", CLUSTER, "v1")
    status.record_nack("node-a", CLUSTER, "v2", "n2", "bad cluster", 3)
    app[METRICS].event_published("integration.registered")
    app[METRICS].event_published("integration.registered")

    samples = await _scrape(client)
    assert _value(samples, "integration_service_xds_pushes_total", type="cluster") == 2
    assert _value(samples, "integration_service_xds_pushes_total", type="listener") == 1
    assert _value(samples, "integration_service_xds_acks_total", type="cluster") == 1
    assert _value(samples, "integration_service_xds_nacks_total", type="cluster") == 1
    assert (
        _value(
            samples,
            "integration_service_xds_type_state",
            node="node-a",
            type="cluster",
            state="nacked",
        )
        == 1
    )
    assert _value(samples, "integration_service_xds_node_connected", node="node-a") == 1
    assert (
        _value(samples, "integration_service_events_published_total", type="integration.registered")
        == 2
    )
    sizes = {
        dict(labels)["kind"]: value
        for (name, labels), value in samples.items()
        if name == "integration_service_registry_integrations"
    }
    assert sizes["stripe"] == 1 and sum(sizes.values()) == 7
    version = [
        dict(labels)["version"]
        for (name, labels), _ in samples.items()
        if name == "integration_service_config_info"
    ]
    assert len(version) == 1 and version[0], "the served snapshot version is exported"


async def test_probe_results_become_gauges(client: TestClient[Any, Any]) -> None:
    app = client.app
    assert app is not None
    app[PROBES].record("stripe", ProbeResult(ok=True, latency_ms=42.0, step="balance", detail=""))
    app[PROBES].record("redis", ProbeResult(ok=False, latency_ms=5.0, step="ping", detail="x"))
    samples = await _scrape(client)
    up = "integration_service_probe_success"
    assert _value(samples, up, integration="stripe", kind="stripe") == 1
    assert _value(samples, up, integration="redis", kind="redis") == 0
    latency = _value(
        samples, "integration_service_probe_latency_seconds", integration="stripe", kind="stripe"
    )
    assert latency == pytest.approx(0.042)
    assert _value(samples, up, integration="auth0", kind="auth0") is None, "never probed"


async def test_two_apps_in_one_process_keep_separate_registries(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    async with (
        TestClient(TestServer(_app(first))) as one,
        TestClient(TestServer(_app(second))) as two,
    ):
        for _ in range(3):
            await one.get("/health/live")
        a, b = await _scrape(one), await _scrape(two)
    name = "integration_service_api_request_duration_seconds_count"
    live = {"route": "/health/live", "method": "GET", "status": "200"}
    assert _value(a, name, **live) == 3
    assert _value(b, name, **live) is None


async def test_openmetrics_when_asked(client: TestClient[Any, Any]) -> None:
    response = await client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response.status == 200
    assert response.content_type == "application/openmetrics-text"
    assert (await response.text()).rstrip().endswith("# EOF")
