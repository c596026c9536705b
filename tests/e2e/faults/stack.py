"""Small pieces the fault tests share: an API client, outbox counts, service lifecycles."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from tests.support.service import ServiceProcess

__all__ = ["Answer", "Api", "outbox_counts", "running_service", "wait_exit"]


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: Any
    elapsed_ms: float


class Api:
    """JSON calls to the control plane's REST API."""

    def __init__(self, service: ServiceProcess, session: aiohttp.ClientSession) -> None:
        self.service = service
        self.session = session

    async def call(self, method: str, path: str, body: Any = None, **kw: Any) -> Answer:
        started = time.monotonic()
        async with self.session.request(
            method,
            self.service.base_url + path,
            json=body,
            headers=self.service.admin_headers,
            **kw,
        ) as response:
            text = await response.text()
            try:
                parsed: Any = await response.json(content_type=None)
            except ValueError:
                parsed = text
            return Answer(
                response.status,
                dict(response.headers),
                parsed,
                (time.monotonic() - started) * 1000,
            )

    async def get(self, path: str) -> Answer:
        return await self.call("GET", path)

    async def ok(self, path: str) -> Any:
        answer = await self.get(path)
        assert answer.status == 200, (path, answer)
        return answer.body

    async def post(self, path: str, body: Any = None, **kw: Any) -> Answer:
        return await self.call("POST", path, body, **kw)


async def outbox_counts(dsn: str) -> tuple[int, int]:
    """``(events written, events not yet published)`` in the PostgreSQL outbox."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        total = await conn.fetchval("SELECT count(*) FROM outbox")
        pending = await conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
    finally:
        await conn.close()
    return int(total), int(pending)


async def wait_exit(service: ServiceProcess, deadline_s: float = 30.0) -> int:
    """The exit code, polled without blocking the loop (fakes on this loop must answer)."""
    assert service.process is not None
    end = time.monotonic() + deadline_s
    while (code := service.process.poll()) is None:
        if time.monotonic() > end:
            service.process.kill()
            raise AssertionError(f"service did not exit within {deadline_s}s")
        await asyncio.sleep(0.05)
    return code


@asynccontextmanager
async def running_service(
    workdir: Path,
    integrations_yaml: str,
    *,
    env: Mapping[str, str] | None = None,
    embedded: bool = True,
    ready: bool = True,
    **options: Any,
) -> AsyncIterator[tuple[ServiceProcess, Api]]:
    """A started control plane (embedded Envoy by default) and an API client for it.

    Stopped with SIGTERM on exit (polled, so loopback fakes on this loop keep answering).
    """
    service = ServiceProcess(workdir, integrations_yaml, env=env, embedded=embedded, **options)
    service.start()
    timeout = aiohttp.ClientTimeout(total=30)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            if ready:
                await service.wait_ready()
            else:
                await service.wait_http()
            yield service, Api(service, session)
    finally:
        process = service.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                await wait_exit(service)
            except AssertionError:
                process.wait(10)
