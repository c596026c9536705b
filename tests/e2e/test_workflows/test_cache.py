"""Per-integration response caching end to end: real Envoy, the real control plane, a
loopback upstream answering ``Cache-Control: max-age=60``.

What is proved: a miss is routed like an uncached request (the upstream sees its own Host
and the injected credential), N GETs of one path reach the upstream once, the cache
endpoint reports exactly that traffic and only the integration's own entries, and a
clear empties the cache so the next GET is a miss again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.support.envoy import dynamic_listeners
from tests.support.ports import free_port
from tests.support.stack import Stack, running_stack
from tests.support.upstream import Upstream, running_upstream
from tests.support.waiting import wait_until

pytestmark = pytest.mark.envoy

SECRET = "sk_test_cache_9fQ2xLm4"
GETS = 5


class CacheStack(Stack):
    async def cache(self, ident: str) -> dict[str, Any]:
        async with self.session.get(self.api(f"/integrations/{ident}/cache")) as r:
            assert r.status == 200, await r.text()
            body: dict[str, Any] = await r.json()
            return body

    async def get(self, ident: str, path: str) -> int:
        async with self.session.get(self.sidecar(ident, path)) as response:
            await response.read()
            return response.status


@asynccontextmanager
async def stack(tmp_path: Path) -> AsyncIterator[tuple[CacheStack, Upstream]]:
    ports = {name: free_port() for name in ("cached", "other")}
    async with running_upstream(cache_control="max-age=60") as upstream:
        registry = f"""
integrations:
  - id: cached
    kind: stripe
    upstream: {upstream.url}
    listen_port: {ports["cached"]}
    credentials: {{api_key: env:E2E_CACHE_KEY}}
    policies:
      cache: {{enabled: true}}
  - id: other
    kind: http
    upstream: {upstream.url}
    listen_port: {ports["other"]}
    policies:
      cache: {{enabled: true}}
"""
        async with running_stack(
            tmp_path, registry, env={"E2E_CACHE_KEY": SECRET}, ports=ports
        ) as s:
            yield CacheStack(s.service, s.envoy, s.session, s.ports), upstream


async def test_hits_misses_entries_and_clear(tmp_path: Path) -> None:
    async with stack(tmp_path) as (s, upstream):
        listeners = dynamic_listeners(await s.config_dump())
        assert {"cached", "cached_cache_fill", "other", "other_cache_fill"} <= set(listeners)

        codes = [await s.get("cached", "/v1/prices") for _ in range(GETS)]
        assert codes == [200] * GETS
        assert len(upstream.requests) == 1, "one miss, then hits"
        seen = upstream.requests[0]["headers"]
        assert seen["Host"] == f"127.0.0.1:{upstream.port}", "the miss carried the SaaS's Host"
        assert seen["Authorization"] == f"Bearer {SECRET}"
        assert not [h for h in seen if h.lower().startswith("x-envoy")]
        assert "X-Forwarded-For" not in seen

        async def stored() -> bool:
            return bool((await s.cache("cached"))["entries"] >= 1)

        await wait_until(stored, deadline_s=10, message="entry stored")
        body = await _counted(s, GETS - 1, 1)
        assert (body["hits"], body["misses"]) == (GETS - 1, 1)
        assert (body["stored"], body["bypassed"]) == (1, 0)
        assert body["hit_ratio"] == round((GETS - 1) / GETS, 4)
        assert body["disk"]["files"] == body["entries"] >= 1
        assert body["path"].endswith("/http-cache/cached/0")
        other = await s.cache("other")
        assert (other["hits"], other["misses"], other["entries"]) == (0, 0, 0), "own path only"

        async with s.session.post(
            f"{s.service.base_url}/integrations/cached/cache/clear"
        ) as response:
            assert response.status == 200, await response.text()
            cleared = await response.json()
        assert cleared["acked"] is True and cleared["removed"] is True
        assert cleared["generation"] == 1
        assert not Path(cleared["cleared_path"]).exists()

        body = await s.cache("cached")
        assert body["path"].endswith("/http-cache/cached/1")
        assert (body["entries"], body["disk"]["files"]) == (0, 0)

        assert await s.get("cached", "/v1/prices") == 200
        assert len(upstream.requests) == 2, "after a clear the next GET is a miss"
        assert await s.get("cached", "/v1/prices") == 200
        assert len(upstream.requests) == 2, "and is cached again"
        body = await _counted(s, GETS, 2)
        # Counters count traffic, not contents: a clear does not reset them.
        assert (body["hits"], body["misses"]) == (GETS, 2)

        # A request that carries its own Authorization never uses the cache.
        async with s.session.get(
            s.sidecar("other", "/v1/private"), headers={"Authorization": "Bearer app"}
        ) as response:
            assert response.status == 200
        other = await s.cache("other")
        assert (other["hits"], other["misses"], other["bypassed"]) == (0, 1, 1)


async def _counted(s: CacheStack, hits: int, misses: int) -> dict[str, Any]:
    """The cache body once Envoy has written the access-log lines of the traffic sent.

    Envoy writes access logs from a flush thread (``/reopen_logs`` asks for a flush but
    does not wait for it), so the counts can trail the responses by a moment; they must
    then equal the traffic exactly, never exceed it.
    """
    body: dict[str, Any] = {}

    async def caught_up() -> bool:
        nonlocal body
        body = await s.cache("cached")
        return bool(body["hits"] + body["misses"] >= hits + misses)

    await wait_until(caught_up, deadline_s=10, message="access log caught up")
    return body
