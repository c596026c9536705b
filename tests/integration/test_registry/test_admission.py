"""One parse per write: the document the registry validates is the one the SSRF guard
checks and the one stored, so what an answer reports does not depend on the body's form."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from control_plane.app import create_app
from control_plane.keys import STORE
from tests.support.app import app_settings

DOC: dict[str, Any] = {"id": "weather", "kind": "http", "upstream": "https://api.example.com"}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    settings = app_settings(tmp_path, auth="disabled", probe_enabled=False)
    async with TestClient(TestServer(create_app(settings, environ={}))) as test_client:
        yield test_client


async def test_an_update_without_id_in_the_body_is_guarded(client: TestClient[Any, Any]) -> None:
    assert (await client.post("/integrations", json=DOC)).status == 201
    body = {k: v for k, v in DOC.items() if k != "id"}  # the id comes from the URL
    response = await client.put(
        "/integrations/weather", json={**body, "upstream": "http://10.0.0.1/"}
    )
    assert response.status == 422, await response.text()
    assert (await response.json())["rule"] == "private"
    row = await client.app[STORE].get("weather")
    assert row is not None and row.version == 1, "nothing stored"
    fine = await client.put("/integrations/weather", json={**body, "description": "ok"})
    assert fine.status == 200, await fine.text()
    assert (await fine.json())["id"] == "weather"


async def test_invalid_documents_report_every_problem(client: TestClient[Any, Any]) -> None:
    bad: dict[str, Any] = {**DOC, "id": "bad", "enabled": "yes", "policies": {"timeout": "0ms"}}
    created = await client.post("/integrations", json=bad)
    assert created.status == 422
    errors = (await created.json())["errors"]
    assert {e["pointer"] for e in errors} >= {"/enabled"}, errors
    assert (await client.app[STORE].get("bad")) is None
    assert (await client.post("/integrations", json=DOC)).status == 201
    updated = await client.put("/integrations/weather", json={**DOC, "enabled": "yes"})
    assert updated.status == 422
    assert [e["pointer"] for e in (await updated.json())["errors"]] == ["/enabled"]


async def test_a_declared_one_is_read_only_before_its_body_is_judged(
    client: TestClient[Any, Any],
) -> None:
    response = await client.put("/integrations/stripe", json={"kind": "nope"})
    assert response.status == 409
    assert (await response.json())["type"].endswith("/declared")
