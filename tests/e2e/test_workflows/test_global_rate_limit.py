"""``scope: global`` quotas with real Envoys, a real envoyproxy/ratelimit and a real Redis.

The control plane renders envoyproxy/ratelimit's config into the service's runtime
directory and points each Envoy's ``ratelimit`` filter at it (docs/rate-limits.md#global).
Windows are the service's fixed per-second windows (Unix time // 1); upstream hits are
bucketed by the time they reach the upstream, so a request decided in the last
milliseconds of a window may land in the next one: the upper bound allows that one.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.support.ports import free_port
from tests.support.ratelimit_service import RateLimitService
from tests.support.stack import Stack, running_stack
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.envoy, pytest.mark.redis]

# One request may straddle a window edge between the service's decision and the upstream.
EDGE_SLACK = 1


@dataclass
class Hits:
    """A loopback upstream recording when each request arrived and for which tenant."""

    port: int = 0
    seen: list[tuple[float, str]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((time.time(), request.headers.get("x-tenant-id", "")))
        return web.json_response({"ok": True})

    def per_window(self, tenant: str | None = None) -> Counter[int]:
        return Counter(int(t) for t, who in self.seen if tenant is None or who == tenant)


@asynccontextmanager
async def hits_upstream() -> AsyncIterator[Hits]:
    hits = Hits()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hits.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    hits.port = runner.addresses[0][1]
    try:
        yield hits
    finally:
        await runner.cleanup()


@pytest.fixture
def ratelimit(redis_url: str, tmp_path: Path) -> Iterator[RateLimitService]:
    service = RateLimitService(redis_url, tmp_path)
    service.start()
    yield service
    service.stop()


def _registry(upstream: Hits, ports: dict[str, int], rules: dict[str, str]) -> str:
    lines = ["integrations:"]
    for ident, rule in rules.items():
        lines += [
            f"  - id: {ident}",
            "    kind: http",
            f"    upstream: http://127.0.0.1:{upstream.port}",
            f"    listen_port: {ports[ident]}",
            "    policies:",
            "      retries: {max_retries: 0}",
            f"      rate_limit: {rule}",
        ]
    return "\n".join(lines) + "\n"


@asynccontextmanager
async def stacks(
    tmp_path: Path, service: RateLimitService, upstream: Hits, rules: dict[str, str], count: int
) -> AsyncIterator[list[Stack]]:
    """``count`` control planes, each with its own Envoy and its own listen ports for the
    same integrations: replicas sharing one rate-limit service (all render its config)."""
    env = {
        "INTEGRATION_SERVICE_RATELIMIT_ADDRESS": service.address,
        "INTEGRATION_SERVICE_RATELIMIT_CONFIG_DIR": str(service.config_dir),
    }
    async with AsyncExitStack() as exit_stack:
        out = []
        for n in range(count):
            ports = {ident: free_port() for ident in rules}
            registry = _registry(upstream, ports, rules)
            out.append(
                await exit_stack.enter_async_context(
                    running_stack(tmp_path / f"replica{n}", registry, env=env, ports=ports)
                )
            )

        def loaded() -> bool:  # the service read what the control planes rendered
            config = service.debug("/rlconfig")
            return all(f"integration_{ident}:" in config for ident in rules)

        await wait_until(loaded)
        yield out


async def _get(session: aiohttp.ClientSession, url: str, tenant: str | None) -> int:
    headers = {"x-tenant-id": tenant} if tenant else {}
    async with session.get(url, headers=headers) as response:
        await response.read()
        return response.status


async def paced(
    session: aiohttp.ClientSession,
    targets: Sequence[tuple[str, str | None]],
    rate_per_s: float,
    seconds: float,
) -> list[int]:
    """``rate_per_s`` requests a second for ``seconds`` (bounded), round-robin over
    ``targets``, each sent on time whatever the previous ones are doing."""
    loop = asyncio.get_running_loop()
    start, interval = loop.time(), 1.0 / rate_per_s
    tasks = []
    for i in range(int(rate_per_s * seconds)):
        await asyncio.sleep(max(0.0, start + i * interval - loop.time()))
        url, tenant = targets[i % len(targets)]
        tasks.append(asyncio.create_task(_get(session, url, tenant)))
    return list(await asyncio.gather(*tasks))


async def _next_window() -> int:
    """Sleep to just past the next whole second; return that second."""
    now = time.time()
    await asyncio.sleep(int(now) + 1.02 - now)
    return int(now) + 1


async def test_one_quota_through_three_envoys(ratelimit: RateLimitService, tmp_path: Path) -> None:
    quota = 20
    async with (
        hits_upstream() as upstream,
        stacks(
            tmp_path,
            ratelimit,
            upstream,
            {"shared": f"{{requests: {quota}, per: 1s, scope: global}}"},
            count=3,
        ) as replicas,
    ):
        targets = [(s.sidecar("shared", "/"), None) for s in replicas]
        first = await _next_window()
        statuses = await paced(replicas[0].session, targets, 2 * quota, 3.9)
        counts = upstream.per_window()
        windows = [counts.get(first + k, 0) for k in range(3)]
        assert all(0.95 * quota <= n <= quota + EDGE_SLACK for n in windows), windows
        assert set(statuses) <= {200, 429}, Counter(statuses)
        for replica in replicas:  # every Envoy asked the service, and some were refused
            stats = await replica.stats()
            assert stats.get("cluster.shared.ratelimit.ok", 0) > 0
            assert stats.get("cluster.shared.ratelimit.over_limit", 0) > 0


async def test_each_listed_tenant_is_held_to_its_own_quota(
    ratelimit: RateLimitService, tmp_path: Path
) -> None:
    rule = (
        "{requests: 100, per: 1s, scope: global, tenant_header: x-tenant-id, "
        "per_tenant: {acme: {requests: 5, per: 1s}, globex: {requests: 10, per: 1s}}}"
    )
    async with (
        hits_upstream() as upstream,
        stacks(tmp_path, ratelimit, upstream, {"tenanted": rule}, count=1) as (stack,),
    ):
        url = stack.sidecar("tenanted", "/")
        # 2x each tenant's quota; unlisted and absent tenants share the integration's bucket.
        targets = [(url, "acme")] * 2 + [(url, "globex")] * 4 + [(url, "initech"), (url, None)]
        first = await _next_window()
        statuses = await paced(stack.session, targets, 40, 3.9)
        for tenant, quota in (("acme", 5), ("globex", 10)):
            counts = upstream.per_window(tenant)
            windows = [counts.get(first + k, 0) for k in range(3)]
            assert all(0.95 * quota <= n <= quota + EDGE_SLACK for n in windows), (tenant, windows)
        # 5 a second each, far below the integration's 100: never refused.
        unlisted = [
            s for i, s in enumerate(statuses) if targets[i % len(targets)][1] in (None, "initech")
        ]
        assert set(unlisted) == {200}, Counter(unlisted)


async def _burst(stack: Stack, ident: str, n: int = 8) -> Counter[int]:
    url = stack.sidecar(ident, "/")
    return Counter(await asyncio.gather(*(_get(stack.session, url, None) for _ in range(n))))


async def test_outage_fail_open_and_closed_then_recovery(
    ratelimit: RateLimitService, tmp_path: Path
) -> None:
    rules = {
        "open-one": "{requests: 3, per: 1s, scope: global}",
        "closed-one": "{requests: 3, per: 1s, scope: global, failure_mode: closed}",
    }
    async with (
        hits_upstream() as upstream,
        stacks(tmp_path, ratelimit, upstream, rules, count=1) as (stack,),
    ):
        await _next_window()
        for ident in rules:  # counting: a burst past the quota is refused
            assert (await _burst(stack, ident))[429] >= 1
        ratelimit.stop()
        open_statuses, closed_statuses = (
            await _burst(stack, "open-one"),
            await _burst(stack, "closed-one"),
        )
        assert open_statuses == Counter({200: 8}), open_statuses  # serves, past the quota
        assert closed_statuses == Counter({503: 8}), closed_statuses
        stats = await stack.stats()
        assert stats["cluster.open-one.ratelimit.failure_mode_allowed"] >= 8
        assert stats["cluster.closed-one.ratelimit.error"] >= 8
        ratelimit.start()  # same ports: Envoy reconnects, no restart of anything else

        seen: list[object] = []

        async def counting_again() -> bool:
            await _next_window()
            bursts = {ident: await _burst(stack, ident) for ident in rules}
            seen.append(bursts)
            return all(b[429] >= 1 for b in bursts.values())

        try:
            await wait_until(counting_again, deadline_s=20, interval_s=0.2)
        except TimeoutError:
            raise AssertionError((seen[-3:], ratelimit.log()[-3000:])) from None
        assert (await _burst(stack, "closed-one"))[503] == 0
