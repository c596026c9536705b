"""Vetted resolution closes DNS rebinding, with a real Envoy and a real DNS protocol.

The control plane (a subprocess) asks a loopback DNS server (``tests/support/fake_dns.py``)
for the upstream's name; Envoy never resolves it. The allow-list of this test admits only
127.0.0.2, where the real upstream listens; 127.0.0.3 stands in for the metadata service
(outside the allow-list, so refused by rule ``loopback``) and counts every TCP connection
it accepts. The name is re-pointed between the two, and Envoy never connects to .3.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.support.fake_dns import FakeDns, running_dns
from tests.support.ports import free_port
from tests.support.stack import Stack, running_stack
from tests.support.upstream import Upstream
from tests.support.waiting import wait_until

pytestmark = pytest.mark.envoy

NAME = "api.rebind.test"
GOOD, METADATA = "127.0.0.2", "127.0.0.3"


def _port_free_on_both() -> int:
    for _ in range(50):
        port = free_port(GOOD)
        with socket.socket() as probe:
            try:
                probe.bind((METADATA, port))
            except OSError:
                continue
        return port
    raise RuntimeError("no port free on both loopback addresses")


@dataclass
class Counter:
    """A TCP listener that counts connections (and answers any request 200)."""

    connections: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await reader.read(1024)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nmetadata")
        await writer.drain()
        writer.close()


@asynccontextmanager
async def upstreams(port: int) -> AsyncIterator[tuple[Upstream, Counter]]:
    good = Upstream(port=port)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", good.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, GOOD, port).start()
    metadata = Counter()
    server = await asyncio.start_server(metadata.handle, METADATA, port)
    # The stand-in is reachable, so the zero the tests assert means something.
    reader, writer = await asyncio.open_connection(METADATA, port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await reader.read()).endswith(b"metadata")
    writer.close()
    await writer.wait_closed()
    await wait_until(lambda: metadata.connections == 1, message="stand-in answers")
    metadata.connections = 0
    try:
        yield good, metadata
    finally:
        server.close()
        await server.wait_closed()
        await runner.cleanup()


@pytest.fixture
def dns() -> Iterator[FakeDns]:
    with running_dns() as server:
        yield server


@asynccontextmanager
async def stack(tmp_path: Path, dns: FakeDns, listen: int) -> AsyncIterator[Stack]:
    env = {
        "INTEGRATION_SERVICE_DNS_SERVERS": dns.server,
        "INTEGRATION_SERVICE_UPSTREAM_ALLOWLIST": f"{GOOD}/32",
        "INTEGRATION_SERVICE_DNS_TTL_FLOOR": "0.2",
        "INTEGRATION_SERVICE_DNS_TTL_CEILING": "1",
    }
    async with running_stack(tmp_path, "integrations: []\n", env=env, ports={"api": listen}) as s:
        yield s


async def _get(s: Stack, path: str = "/") -> tuple[int, float]:
    started = time.monotonic()
    async with s.session.get(s.sidecar("api", path)) as response:
        await response.read()
        return response.status, time.monotonic() - started


async def _refreshes(dns: FakeDns, count: int = 2) -> None:
    asked = dns.asked(NAME)
    await wait_until(lambda: dns.asked(NAME) >= asked + count, deadline_s=10, message="refresh")


async def _register(s: Stack, port: int, listen: int) -> None:
    doc = {"id": "api", "kind": "http", "upstream": f"http://{NAME}:{port}", "listen_port": listen}
    async with s.session.post(s.api("/integrations"), json=doc) as response:
        assert response.status == 201, await response.text()


async def _resolution(s: Stack) -> dict[str, Any]:
    block: dict[str, Any] = (await s.get_json(s.api("/integrations/api/status")))["resolution"]
    return block


async def test_rebinding_never_reaches_the_refused_address(tmp_path: Path, dns: FakeDns) -> None:
    port, listen = _port_free_on_both(), free_port()
    dns.set(NAME, [GOOD], ttl=0)
    async with upstreams(port) as (good, metadata), stack(tmp_path, dns, listen) as s:
        await _register(s, port, listen)

        async def served() -> bool:
            return (await _get(s))[0] == 200

        await wait_until(served, deadline_s=15, message="the vetted upstream serves")
        assert good.requests[-1]["headers"]["Host"] == f"{NAME}:{port}", "Host is the name"
        clusters = [
            c["cluster"]
            for c in (await s.config_dump())["configs"]
            if "dynamic_active_clusters" in c
            for c in c["dynamic_active_clusters"]
        ]
        (cluster,) = [c for c in clusters if c["name"] == "api"]
        assert cluster["type"] == "EDS", "Envoy does not resolve the name"

        # Re-pointed at the metadata stand-in: refused, the last good address keeps serving.
        dns.set(NAME, [METADATA], ttl=0)
        await _refreshes(dns)
        block = await _resolution(s)
        assert block["refused"] == [{"address": METADATA, "rule": "loopback"}]
        assert block["addresses"] == [GOOD] and "last good" in block["error"]
        before = len(good.requests)
        for _ in range(20):
            assert (await _get(s))[0] == 200
        assert len(good.requests) == before + 20

        # Both in one answer: the refused one is dropped, the good one served.
        dns.set(NAME, [METADATA, GOOD], ttl=0)
        await _refreshes(dns)
        for _ in range(20):
            assert (await _get(s))[0] == 200
        # And back to the refused address alone, for a few refreshes.
        dns.set(NAME, [METADATA], ttl=0)
        await _refreshes(dns, 4)
        for _ in range(20):
            assert (await _get(s))[0] == 200
        assert len(good.requests) == before + 60
        assert metadata.connections == 0, "Envoy never connected to the refused address"
        log = s.service.log()
        assert f"vetted resolution of {NAME} refused {METADATA} (rule loopback)" in log


async def test_no_acceptable_address_ever_fails_fast(tmp_path: Path, dns: FakeDns) -> None:
    port, listen = _port_free_on_both(), free_port()
    async with upstreams(port) as (_good, metadata), stack(tmp_path, dns, listen) as s:
        # Not resolvable at registration (accepted with a warning), then only the refused one.
        await _register(s, port, listen)
        dns.set(NAME, [METADATA], ttl=0)
        await _refreshes(dns)

        async def listening() -> bool:
            return (await _get(s))[0] == 503

        await wait_until(listening, deadline_s=15, message="the listener answers")
        block = await _resolution(s)
        assert block["addresses"] == []
        assert block["refused"] == [{"address": METADATA, "rule": "loopback"}]
        timings = [await _get(s) for _ in range(20)]
        assert {status for status, _ in timings} == {503}
        assert max(elapsed for _, elapsed in timings) < 0.5, "503 at once, no DNS fallback"
        assert metadata.connections == 0
