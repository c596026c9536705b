"""Driving ``scope: global`` quotas: an upstream that records when each request arrived,
replicas (control plane + Envoy) sharing one envoyproxy/ratelimit, and paced load. Shared by
tests/e2e/test_workflows/test_global_rate_limit.py and bench/ratelimit.py."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from tests.support.ports import free_port
from tests.support.ratelimit_service import RateLimitService
from tests.support.serving import serving
from tests.support.stack import Stack, running_stack
from tests.support.waiting import wait_until

__all__ = ["Hits", "hits_upstream", "next_window", "paced", "stacks", "status_of"]


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
    async with serving(app) as hits.port:
        yield hits


def registry_yaml(upstream: Hits, ports: dict[str, int], rules: dict[str, str]) -> str:
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
        # Where the API reads the service's counters (the same Redis, database 0).
        "INTEGRATION_SERVICE_RATELIMIT_REDIS_URL": f"redis://{service.redis}/0",
    }
    async with AsyncExitStack() as exit_stack:
        out = []
        for n in range(count):
            ports = {ident: free_port() for ident in rules}
            registry = registry_yaml(upstream, ports, rules)
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


async def status_of(session: aiohttp.ClientSession, url: str, tenant: str | None) -> int:
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
        tasks.append(asyncio.create_task(status_of(session, url, tenant)))
    return list(await asyncio.gather(*tasks))


async def next_window(unit_s: int = 1) -> int:
    """Sleep to just past the next window of ``unit_s`` seconds; return its start."""
    now = time.time()
    start = (int(now) // unit_s + 1) * unit_s
    await asyncio.sleep(start + 0.02 - now)
    return start
