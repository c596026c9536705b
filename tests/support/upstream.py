"""A loopback HTTP upstream that records what reached it (the far side of the sidecar)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.serving import serving

__all__ = ["Upstream", "running_upstream"]


@dataclass
class Upstream:
    port: int = 0
    host: str = "127.0.0.1"  # another loopback address (127.0.0.2) stands in for another host
    requests: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    delay_s: float = 0.0
    cache_control: str | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(
            {"method": request.method, "path": request.path_qs, "headers": dict(request.headers)}
        )
        delay = float(request.query.get("delay", self.delay_s))
        if delay:
            await asyncio.sleep(delay)
        status = int(request.query.get("status", self.status))
        headers = {"Cache-Control": self.cache_control} if self.cache_control else {}
        return web.json_response(
            {"path": request.path_qs, "n": len(self.requests)}, status=status, headers=headers
        )


@asynccontextmanager
async def running_upstream(**options: Any) -> AsyncIterator[Upstream]:
    upstream = Upstream(**options)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", upstream.handle)
    async with serving(app, host=upstream.host) as upstream.port:
        yield upstream
