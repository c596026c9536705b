"""A loopback Consul agent speaking the HTTP API endpoints the control plane uses.

Implemented as Consul documents them (https://developer.hashicorp.com/consul/api-docs):

* ``PUT /v1/agent/service/register`` — JSON service definition (``Name`` required, ``ID``
  defaults to the name); a definition with a ``Check`` starts ``critical`` like Consul's
  checks do, one without checks is passing;
* ``PUT /v1/agent/service/deregister/:service_id`` — 404 for an unknown id;
* ``GET /v1/health/service/:service`` with ``passing``, and blocking queries: ``index``
  (return at once when the current index differs, else hold until it changes) and
  ``wait`` (default 5m, max 10m); every answer carries ``X-Consul-Index``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from tests.support.ports import free_port

__all__ = ["FakeConsul", "running_consul"]

NODE = {"ID": "0f0f0f0f-0000-0000-0000-000000000001", "Node": "fake-node", "Address": "127.0.0.1"}


def _duration(text: str) -> float:
    for suffix, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * scale
    return float(text)


class FakeConsul:
    def __init__(self) -> None:
        self.services: dict[str, dict[str, Any]] = {}
        self.check_status: dict[str, str] = {}
        self.index = 1
        self.requests: list[tuple[str, str]] = []
        self.blocking_queries = 0
        self._changed = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_put("/v1/agent/service/register", self._register)
        self.app.router.add_put("/v1/agent/service/deregister/{service_id}", self._deregister)
        self.app.router.add_get("/v1/health/service/{service}", self._health)
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _bump(self) -> None:
        self.index += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def set_check(self, service_id: str, status: str) -> None:
        """What the agent's own check runner would do: ``passing`` or ``critical``."""
        self.check_status[service_id] = status
        self._bump()

    async def _register(self, request: web.Request) -> web.Response:
        self.requests.append(("register", request.path))
        try:
            body = await request.json()
        except ValueError:
            return web.Response(status=400, text="Request decode failed")
        if not isinstance(body, dict) or not body.get("Name"):
            return web.Response(status=400, text="Missing service name")
        service_id = body.get("ID") or body["Name"]
        self.services[service_id] = body
        has_check = bool(body.get("Check") or body.get("Checks"))
        self.check_status[service_id] = "critical" if has_check else "passing"
        self._bump()
        return web.Response(status=200)

    async def _deregister(self, request: web.Request) -> web.Response:
        service_id = request.match_info["service_id"]
        self.requests.append(("deregister", service_id))
        if service_id not in self.services:
            return web.Response(status=404, text=f'Unknown service ID "{service_id}"')
        del self.services[service_id]
        self.check_status.pop(service_id, None)
        self._bump()
        return web.Response(status=200)

    def _entries(self, name: str, passing: bool) -> list[dict[str, Any]]:
        out = []
        for service_id, body in sorted(self.services.items()):
            if body["Name"] != name:
                continue
            status = self.check_status.get(service_id, "passing")
            if passing and status != "passing":
                continue
            checks = [{"Node": NODE["Node"], "CheckID": "serfHealth", "Status": "passing"}]
            if body.get("Check"):
                checks.append(
                    {"CheckID": f"service:{service_id}", "ServiceID": service_id, "Status": status}
                )
            out.append(
                {
                    "Node": dict(NODE),
                    "Service": {
                        "ID": service_id,
                        "Service": name,
                        "Tags": body.get("Tags") or [],
                        "Address": body.get("Address", ""),
                        "Meta": body.get("Meta") or {},
                        "Port": body.get("Port", 0),
                    },
                    "Checks": checks,
                }
            )
        return out

    async def _health(self, request: web.Request) -> web.Response:
        name = request.match_info["service"]
        self.requests.append(("health", name))
        passing = "passing" in request.query and request.query["passing"] not in ("false", "0")
        if "index" in request.query:
            self.blocking_queries += 1
            try:
                wanted = int(request.query["index"])
                wait = min(_duration(request.query.get("wait", "5m")), 600.0)
            except ValueError:
                return web.Response(status=400, text="Invalid index or wait")
            if wanted >= self.index:
                changed = self._changed
                try:
                    await asyncio.wait_for(changed.wait(), wait)
                except TimeoutError:
                    pass
        return web.json_response(
            self._entries(name, passing),
            headers={
                "X-Consul-Index": str(self.index),
                "X-Consul-KnownLeader": "true",
                "X-Consul-LastContact": "0",
            },
        )


@asynccontextmanager
async def running_consul() -> AsyncIterator[FakeConsul]:
    fake = FakeConsul()
    # Held blocking queries must not delay shutdown by aiohttp's default 60 s.
    runner = web.AppRunner(fake.app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    fake.port = free_port()
    await web.TCPSite(runner, "127.0.0.1", fake.port).start()
    try:
        yield fake
    finally:
        await runner.cleanup()
