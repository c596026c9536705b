"""Ports Envoy cannot bind are refused before anything is stored, every reason at once
(regression: a listen_port equal to the management API's, xDS or admin port, a privileged or
out-of-range port was stored with 201, and Envoy then NACKed the whole listener type)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from control_plane.app import create_app
from tests.support.app import app_settings

DOC = {"id": "weather", "kind": "http", "upstream": "https://api.weather.example.com"}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    settings = app_settings(
        tmp_path,
        auth="disabled",
        probe_enabled=False,
        port=10500,  # the management API inside listen_port_range, as a user might set it
        xds_port=18000,
        envoy_admin_port=9901,
        listen_port_range=(10000, 10999),
    )
    async with TestClient(TestServer(create_app(settings, environ={}))) as test_client:
        yield test_client


async def _refused(client: TestClient[Any, Any], port: int) -> list[str]:
    response = await client.post("/integrations", json={**DOC, "listen_port": port})
    assert response.status == 422, await response.text()
    body = await response.json()
    messages = [e["message"] for e in body["errors"] if e["pointer"] == "/listen_port"]
    assert all("listen_port_range 10000-10999" in e["fix"] for e in body["errors"])
    listing = await (await client.get("/integrations")).json()
    assert "weather" not in {i["id"] for i in listing["items"]}  # nothing stored
    return messages


async def test_the_management_api_port_is_refused(client: TestClient[Any, Any]) -> None:
    assert await _refused(client, 10500) == ["port 10500 is the management API (port)"]


async def test_every_reason_at_once(client: TestClient[Any, Any]) -> None:
    messages = await _refused(client, 9901)
    assert messages[0] == "port 9901 is Envoy's admin API (envoy_admin_port)"
    assert "outside listen_port_range" in messages[1]
    assert len(messages) == 2
    xds = await _refused(client, 18000)
    assert xds[0] == "port 18000 is the xDS server (xds_port)"


async def test_privileged_and_out_of_range(client: TestClient[Any, Any]) -> None:
    messages = await _refused(client, 80)
    assert any("privileged" in m for m in messages)
    assert any("outside listen_port_range" in m for m in messages)
    assert await _refused(client, 20000) == ["port 20000 is outside listen_port_range 10000-10999"]


async def test_schema_and_port_problems_come_together(client: TestClient[Any, Any]) -> None:
    response = await client.post(
        "/integrations", json={**DOC, "kind": "nope", "listen_port": 10500}
    )
    assert response.status == 422
    pointers = {e["pointer"] for e in (await response.json())["errors"]}
    assert {"/kind", "/listen_port"} <= pointers


async def test_another_integrations_port_is_a_conflict(client: TestClient[Any, Any]) -> None:
    first = await client.post("/integrations", json={**DOC, "listen_port": 10700})
    assert first.status == 201
    second = await client.post("/integrations", json={**DOC, "id": "other", "listen_port": 10700})
    assert second.status == 409
    assert "already used by 'weather'" in (await second.json())["detail"]
    # a PUT that moves onto a reserved port is refused the same way, and changes nothing
    moved = await client.put("/integrations/weather", json={**DOC, "listen_port": 10500})
    assert moved.status == 422
    assert (await (await client.get("/integrations/weather")).json())["listen_port"] == 10700
