"""Hostile request bodies and paths: every answer is problem+json with a useful title, and
nothing is stored (regressions: 500 RecursionError, 413 titled "Error", plain-text 400 for a
long id, duplicate keys silently taking the last value, "id\\n" stored)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from control_plane.api.body import MAX_DEPTH
from control_plane.app import create_app
from tests.support.app import app_settings

JSON = {"Content-Type": "application/json"}
DOC = '{"id": "deep", "kind": "http", "upstream": "https://api.example.com"'


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(app_settings(tmp_path, auth="disabled"), environ={})
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def _problem(response: Any, status: int, title: str) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == "application/problem+json"
    body: dict[str, Any] = await response.json()
    assert body["title"] == title and body["status"] == status
    return body


async def _registered(client: TestClient[Any, Any]) -> set[str]:
    listing = await (await client.get("/integrations", params={"limit": "500"})).json()
    return {i["id"] for i in listing["items"] if i["source"] == "registered"}


@pytest.mark.parametrize("path", ["/integrations", "/api-keys"])
async def test_deep_nesting_is_400_not_500(client: TestClient[Any, Any], path: str) -> None:
    deep = DOC + ', "description": ' + "[" * 1000 + "]" * 1000 + "}"
    body = await _problem(await client.post(path, data=deep, headers=JSON), 400, "Bad Request")
    assert f"deeper than {MAX_DEPTH}" in body["detail"]
    # brackets inside strings are text, not nesting
    fine = DOC + ', "description": "' + "[" * 100 + '"}'
    assert (await client.post("/integrations", data=fine, headers=JSON)).status == 201
    assert await _registered(client) == {"deep"}


async def test_a_huge_body_is_413_content_too_large(client: TestClient[Any, Any]) -> None:
    huge = (DOC + ', "description": "' + "x" * 10_000_000 + '"}').encode()
    response = await client.post("/integrations", data=io.BytesIO(huge), headers=JSON)
    await _problem(response, 413, "Content Too Large")
    assert await _registered(client) == set()


@pytest.mark.parametrize("length", [64, 5_000, 9_000, 20_000])
async def test_an_over_long_id_is_a_problem_404(client: TestClient[Any, Any], length: int) -> None:
    body = await _problem(await client.get("/integrations/" + "a" * length), 404, "Not Found")
    assert len(body["detail"]) < 300  # the id is not echoed back in full
    assert "at most 63 characters" in body["detail"]


async def test_duplicate_keys_are_refused_naming_the_key(client: TestClient[Any, Any]) -> None:
    twice = DOC + ', "id": "other"}'
    body = await _problem(
        await client.post("/integrations", data=twice, headers=JSON), 422, "Unprocessable Content"
    )
    assert "duplicate key 'id'" in body["errors"][0]["message"]
    assert await _registered(client) == set()


@pytest.mark.parametrize(
    "changes",
    [{"id": "nl\n"}, {"policies": {"timeout": "10s\n"}}, {"tenant": "acme\n"}],
    ids=["id", "duration", "tenant"],
)
async def test_a_trailing_newline_is_422_and_nothing_is_stored(
    client: TestClient[Any, Any], changes: dict[str, Any]
) -> None:
    doc = {"id": "nl", "kind": "http", "upstream": "https://api.example.com", **changes}
    await _problem(await client.post("/integrations", json=doc), 422, "Unprocessable Content")
    assert await _registered(client) == set()


async def test_every_error_is_problem_json(client: TestClient[Any, Any]) -> None:
    await _problem(await client.patch("/integrations"), 405, "Method Not Allowed")
    await _problem(await client.get("/no-such-route"), 404, "Not Found")
    await _problem(await client.post("/integrations", data="{", headers=JSON), 400, "Bad Request")
    await _problem(
        await client.post("/integrations", data="x", headers={"Content-Type": "text/plain"}),
        415,
        "Unsupported Media Type",
    )
