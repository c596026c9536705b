"""Every endpoint of the management API, driven against ``integration-service run`` with
real Envoy and loopback upstreams, authenticated as an admin. The numbers read back
(allowed, limited, ejections, cache hits and misses) must equal the traffic generated.

The list of endpoints comes from ``/openapi.json``: an endpoint added without being
exercised here fails the test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from tests.support.ports import free_port
from tests.support.service import ServiceProcess
from tests.support.stack import running_stack
from tests.support.upstream import running_upstream
from tests.support.waiting import wait_until

pytestmark = pytest.mark.envoy

SECRET = "sk_test_every_endpoint_7Hq2"
BURST, EXTRA, CACHED_GETS = 4, 3, 5


class Api:
    def __init__(self, service: ServiceProcess, session: aiohttp.ClientSession) -> None:
        self.service = service
        self.session = session
        self.called: set[tuple[str, str]] = set()

    async def call(
        self, method: str, template: str, expect: int, **kwargs: Any
    ) -> tuple[Any, CIMultiDict[str]]:
        path = template.format(integration_id=kwargs.pop("ident", ""), key_id=kwargs.pop("key", ""))
        headers = {**self.service.admin_headers, **kwargs.pop("headers", {})}
        url = self.service.base_url + path
        async with self.session.request(method, url, headers=headers, **kwargs) as response:
            text = await response.text()
            assert response.status == expect, f"{method} {path}: {response.status} {text}"
            assert SECRET not in text and SECRET not in str(response.headers)
            self.called.add((method.lower(), template))
            try:
                body: Any = await response.json(content_type=None)
            except ValueError:
                body = text
            return body, CIMultiDict(response.headers)


async def test_every_endpoint_reports_the_traffic_it_saw(tmp_path: Path) -> None:
    ports = {n: free_port() for n in ("api", "flaky", "cached", "created")}
    async with (
        running_upstream() as ok,
        running_upstream(cache_control="max-age=60") as cacheable,
        running_upstream() as flaky,
    ):
        registry = f"""
integrations:
  - id: api
    kind: stripe
    upstream: {ok.url}
    listen_port: {ports["api"]}
    credentials: {{api_key: env:E2E_KEY}}
    policies:
      rate_limit: {{requests: 1, per: 1h, burst: {BURST}}}
  - id: flaky
    kind: http
    upstream: {flaky.url}
    listen_port: {ports["flaky"]}
    policies:
      retries: {{max_retries: 0}}
      outlier_detection: {{consecutive_5xx: 2, interval: 1s, base_ejection_time: 60s}}
  - id: cached
    kind: http
    upstream: {cacheable.url}
    listen_port: {ports["cached"]}
    policies:
      cache: {{enabled: true}}
    settings: {{probe_path: /probe, expected_status: 200}}
"""
        async with running_stack(
            tmp_path, registry, env={"E2E_KEY": SECRET}, auth=True, timeout_s=20
        ) as s:
            api = Api(s.service, s.session)
            await _drive(api, s.session, ports, ok.url, flaky, cacheable)
            spec, _ = await api.call("GET", "/openapi.json", 200)
            documented = {
                (method, path)
                for path, ops in spec["paths"].items()
                for method in ops
                if method in ("get", "post", "put", "delete")
            }
            assert documented - api.called == set(), "endpoints not exercised"
        assert SECRET not in s.service.log()


async def _status_page(api: Api) -> None:
    """The status page's routes, while flaky is ejected: its row reads open everywhere."""
    shell, _ = await api.call("GET", "/ui", 200)
    assert "flaky" not in shell, "the public shell holds no data"
    async with api.session.get(api.service.base_url + "/ui/static/app.js") as response:
        assert response.status == 200
        api.called.add(("get", "/ui/static/{name}"))
    overview, _ = await api.call("GET", "/ui/fragments/overview", 200)
    assert 'id="row-flaky"' in overview
    assert 'data-breaker="open"' in overview.split('id="row-flaky"')[1].split(">")[0]
    detail, _ = await api.call(
        "GET", "/ui/fragments/integrations/{integration_id}", 200, ident="flaky"
    )
    assert "circuit-breaker/reset" in detail and SECRET not in detail
    headers = api.service.admin_headers
    async with api.session.get(api.service.base_url + "/ui/stream", headers=headers) as stream:
        assert stream.status == 200
        while not (line := await stream.content.readline()).startswith(b"data: "):
            pass
        rows = json.loads(line[6:])
        flaky_row = next(r for r in rows["upsert"] if r["id"] == "flaky")
        assert 'data-breaker="open"' in flaky_row["html"]
        api.called.add(("get", "/ui/stream"))


async def _sidecar(session: aiohttp.ClientSession, port: int, path: str = "/") -> int:
    async with session.get(f"http://127.0.0.1:{port}{path}") as response:
        await response.read()
        return response.status


async def _drive(
    api: Api,
    session: aiohttp.ClientSession,
    ports: dict[str, int],
    upstream_url: str,
    flaky: Any,
    cacheable: Any,
) -> None:
    # Service health.
    for path in ("/health", "/health/live", "/health/ready"):
        await api.call("GET", path, 200)
    metrics, _ = await api.call("GET", "/metrics", 200)
    assert "integration_service_api_request_duration_seconds" in metrics

    # CRUD on a registered integration.
    listing, _ = await api.call("GET", "/integrations", 200)
    assert listing["total"] == 3
    doc = {
        "id": "created",
        "kind": "http",
        "upstream": upstream_url,
        "listen_port": ports["created"],
    }
    created, headers = await api.call("POST", "/integrations", 201, json=doc)
    assert created["version"] == 1
    assert headers["Location"] == "/integrations/created"
    _, headers = await api.call("GET", "/integrations/{integration_id}", 200, ident="created")
    etag = headers["ETag"]
    await api.call(
        "PUT",
        "/integrations/{integration_id}",
        200,
        ident="created",
        json={**doc, "description": "changed"},
        headers={"If-Match": etag},
    )
    await api.call(
        "PUT",
        "/integrations/{integration_id}",
        412,
        ident="created",
        json=doc,
        headers={"If-Match": etag},
    )

    async def serves() -> bool:
        return await _sidecar(session, ports["created"]) == 200

    await wait_until(
        serves,
        deadline_s=10,
        message="created integration serves",
    )

    # Rate limit: exactly the excess is limited, and the API reads back the same numbers.
    codes = [await _sidecar(session, ports["api"], "/v1/balance") for _ in range(BURST + EXTRA)]
    assert (codes.count(200), codes.count(429)) == (BURST, EXTRA)
    body, _ = await api.call("GET", "/integrations/{integration_id}/rate-limit", 200, ident="api")
    assert body["counters"]["allowed"] == BURST
    assert body["counters"]["limited"] == EXTRA

    # Cache: N GETs of one path → one miss, N-1 hits; clear → the next GET is a miss.
    for _ in range(CACHED_GETS):
        assert await _sidecar(session, ports["cached"], "/catalog") == 200
    assert len(cacheable.requests) == 1
    body = {}

    async def logged() -> bool:
        # Envoy writes access logs from a flush thread: the counts may trail a moment.
        nonlocal body
        body, _ = await api.call("GET", "/integrations/{integration_id}/cache", 200, ident="cached")
        return bool(body["hits"] + body["misses"] >= CACHED_GETS)

    await wait_until(logged, deadline_s=10, message="access log caught up")
    assert (body["hits"], body["misses"]) == (CACHED_GETS - 1, 1)
    await api.call("POST", "/integrations/{integration_id}/cache/clear", 200, ident="cached")
    assert await _sidecar(session, ports["cached"], "/catalog") == 200
    assert len(cacheable.requests) == 2

    # Probe, health and status.
    result, _ = await api.call("POST", "/integrations/{integration_id}/test", 200, ident="cached")
    assert result["ok"] is True, result
    body, _ = await api.call("GET", "/integrations/{integration_id}/health", 200, ident="cached")
    assert body["state"] == "healthy"
    body, _ = await api.call("GET", "/integrations/{integration_id}/status", 200, ident="api")
    assert body["config"]["state"] == "acked"

    # Ejection: the breaker endpoint reads it; reset lets the next request through.
    flaky.status = 503
    for _ in range(2):
        assert await _sidecar(session, ports["flaky"]) == 503

    async def ejected() -> bool:
        body, _ = await api.call(
            "GET", "/integrations/{integration_id}/circuit-breaker", 200, ident="flaky"
        )
        return bool(body["outlier_detection"]["ejections_active"] == 1)

    await wait_until(ejected, deadline_s=10, message="flaky ejected")
    await _status_page(api)
    seen = len(flaky.requests)
    assert await _sidecar(session, ports["flaky"]) == 503
    assert len(flaky.requests) == seen, "failed fast while ejected"
    flaky.status = 200
    await api.call(
        "POST", "/integrations/{integration_id}/circuit-breaker/reset", 200, ident="flaky"
    )
    assert await _sidecar(session, ports["flaky"]) == 200
    assert len(flaky.requests) == seen + 1

    # Keys and audit.
    key, _ = await api.call(
        "POST", "/api-keys", 201, json={"name": "ci", "role": "viewer", "tenant": "default"}
    )
    keys, _ = await api.call("GET", "/api-keys", 200)
    assert any(k["id"] == key["id"] for k in keys["items"])
    await api.call("DELETE", "/api-keys/{key_id}", 204, key=key["id"])
    audit, _ = await api.call("GET", "/audit", 200)
    actions = [entry["action"] for entry in audit["items"]]
    assert actions == [  # newest first, one entry per change made above
        "api_key.revoke",
        "api_key.create",
        "integration.breaker_reset",
        "integration.test",
        "integration.cache_clear",
        "integration.update",
        "integration.create",
    ]

    await api.call("DELETE", "/integrations/{integration_id}", 204, ident="created")
    await api.call("GET", "/integrations/{integration_id}", 404, ident="created")
