"""The /integrations API over a real aiohttp server and a real SQLite store (no Envoy)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from control_plane.app import create_app
from control_plane.keys import STORE
from tests.support.app import app_settings

HTTP_DOC: dict[str, Any] = {
    "id": "weather",
    "kind": "http",
    "tenant": "acme",
    "upstream": "https://api.weather.example.com",
    "credentials": {"api_key": "env:WEATHER_KEY"},
    "policies": {"rate_limit": {"requests": 5, "per": "1s", "burst": 10}},
}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    settings = app_settings(tmp_path, auth="disabled")  # explicit: the API, not auth
    app = create_app(settings, environ={"WEATHER_KEY": "wk-secret-value-123"})
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def test_create_get_etag_update_delete(client: TestClient[Any, Any]) -> None:
    created = await client.post("/integrations", json=HTTP_DOC)
    assert created.status == 201, await created.text()
    assert created.headers["Location"] == "/integrations/weather"
    body = await created.json()
    assert body["version"] == 1
    assert body["source"] == "registered"
    assert 10000 <= body["listen_port"] <= 10999
    assert body["credentials"] == {"api_key": "env:WEATHER_KEY"}
    etag = created.headers["ETag"]

    got = await client.get("/integrations/weather")
    assert got.headers["ETag"] == etag
    assert (
        await client.get("/integrations/weather", headers={"If-None-Match": etag})
    ).status == 304

    changed = {**HTTP_DOC, "description": "now described"}
    updated = await client.put("/integrations/weather", json=changed, headers={"If-Match": etag})
    assert updated.status == 200, await updated.text()
    assert (await updated.json())["version"] == 2
    assert (await updated.json())["listen_port"] == body["listen_port"], "port is stable"

    stale = await client.put("/integrations/weather", json=changed, headers={"If-Match": etag})
    assert stale.status == 412
    assert stale.content_type == "application/problem+json"

    gone = await client.delete(
        "/integrations/weather", headers={"If-Match": updated.headers["ETag"]}
    )
    assert gone.status == 204
    assert (await client.get("/integrations/weather")).status == 404


async def test_duplicate_and_declared_conflicts(client: TestClient[Any, Any]) -> None:
    assert (await client.post("/integrations", json=HTTP_DOC)).status == 201
    dup = await client.post("/integrations", json=HTTP_DOC)
    assert dup.status == 409
    declared = await client.put(
        "/integrations/stripe",
        json={"id": "stripe", "kind": "stripe", "upstream": "https://api.stripe.com"},
    )
    assert declared.status == 409
    assert "edit the file" in (await declared.json())["detail"]
    clash = await client.post("/integrations", json={**HTTP_DOC, "id": "stripe"})
    assert clash.status == 409
    assert (await client.delete("/integrations/stripe")).status == 409


async def test_validation_lists_every_problem_with_pointers(client: TestClient[Any, Any]) -> None:
    bad = {
        "id": "Bad_Id",
        "kind": "ftp",
        "upstream": "https://x.example.com",
        "listen_port": 70000,
        "credentials": {"api_key": "sk_live_do_not_echo"},
    }
    response = await client.post("/integrations", json=bad)
    assert response.status == 422
    assert response.content_type == "application/problem+json"
    text = await response.text()
    assert "sk_live_do_not_echo" not in text
    pointers = {e["pointer"] for e in (await response.json())["errors"]}
    assert {"/id", "/kind", "/listen_port", "/credentials/api_key"} <= pointers
    assert (await client.get("/integrations/bad_id")).status == 404


async def test_list_filters_and_pagination(client: TestClient[Any, Any]) -> None:
    await client.post("/integrations", json=HTTP_DOC)
    everything = await (await client.get("/integrations")).json()
    assert everything["total"] == 8
    acme = await (await client.get("/integrations", params={"tenant": "acme"})).json()
    assert [i["id"] for i in acme["items"]] == ["weather"]
    tcp = await (await client.get("/integrations", params={"kind": "redis"})).json()
    assert [i["id"] for i in tcp["items"]] == ["redis"]
    page = await (await client.get("/integrations", params={"limit": "3", "offset": "0"})).json()
    assert len(page["items"]) == 3
    assert "offset=3" in page["next"]
    unknown = await (await client.get("/integrations", params={"health": "unknown"})).json()
    assert unknown["total"] == 8
    assert (await client.get("/integrations", params={"limit": "0"})).status == 400


async def test_request_id_and_traceparent(client: TestClient[Any, Any]) -> None:
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    response = await client.get(
        "/integrations", headers={"X-Request-ID": "req-123", "traceparent": trace}
    )
    assert response.headers["X-Request-ID"] == "req-123"
    assert response.headers["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    generated = await client.get("/health/live")
    assert len(generated.headers["X-Request-ID"]) == 36


async def test_bad_json_and_media_type(client: TestClient[Any, Any]) -> None:
    response = await client.post(
        "/integrations", data="{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    assert response.content_type == "application/problem+json"
    response = await client.post("/integrations", data="x", headers={"Content-Type": "text/plain"})
    assert response.status == 415


async def test_ready_without_envoy_says_why(client: TestClient[Any, Any]) -> None:
    response = await client.get("/health/ready")
    assert response.status == 503
    checks = (await response.json())["checks"]
    assert checks["envoy"]["ok"] is False
    assert checks["config"]["ok"] is False
    # Readiness is the data path only; the store is reported by /health (issue 14 item 7).
    assert "store" not in checks
    health = await (await client.get("/health")).json()
    assert health["checks"]["store"]["ok"] is True


async def test_a_store_outage_is_health_and_a_metric_not_readiness(
    client: TestClient[Any, Any],
) -> None:
    await client.app[STORE].close()  # the store stops answering
    ready = await (await client.get("/health/ready")).json()
    assert set(ready["checks"]) == {"envoy", "config"}
    health = await (await client.get("/health")).json()
    assert health["status"] == "degraded"
    assert health["checks"]["store"]["ok"] is False and health["checks"]["store"]["detail"]
    metrics = await (await client.get("/metrics")).text()
    assert "integration_service_store_up 0.0" in metrics
