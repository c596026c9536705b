"""Real Envoy + ``integration-service run`` (``--no-envoy``) + an HTTP session, for e2e tests.

Envoy runs beside the control plane on the shared bootstrap, as in Kubernetes where it is
its own container; the control plane serves it xDS and reads its admin API.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from control_plane.sidecar.supervisor import EnvoySupervisor
from tests.support.envoy import running_envoy
from tests.support.ports import free_port
from tests.support.service import E2E_GRANTS, ServiceProcess

__all__ = ["Stack", "running_stack"]


@dataclass
class Stack:
    service: ServiceProcess
    envoy: EnvoySupervisor
    session: aiohttp.ClientSession
    #: Sidecar listen ports by integration id (what the registry declares), for ``sidecar``.
    ports: dict[str, int] = field(default_factory=dict)

    def api(self, path: str) -> str:
        """URL of a management API path."""
        return self.service.base_url + path

    def sidecar(self, ident: str, path: str = "/") -> str:
        """URL of *path* through the Envoy listener of integration *ident*."""
        return f"http://127.0.0.1:{self.ports[ident]}{path}"

    async def get_json(self, url: str) -> Any:
        """GET *url* and return its JSON body, asserting a 200."""
        async with self.session.get(url) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def config_dump(self) -> dict[str, Any]:
        async with self.envoy.admin() as admin:
            return await admin.config_dump()

    async def stats(self) -> dict[str, int | float]:
        async with self.envoy.admin() as admin:
            return await admin.stats()


@asynccontextmanager
async def running_stack(
    workdir: Path,
    registry_yaml: str,
    *,
    env: Mapping[str, str] | None = None,
    delta: bool = True,
    auth: bool = False,
    ports: Mapping[str, int] | None = None,
    timeout_s: float = 10.0,
    headers: Mapping[str, str] | None = None,
    grants: str = E2E_GRANTS,
) -> AsyncIterator[Stack]:
    """Envoy (in ``workdir/envoy``) and a ready control plane (in ``workdir/cp``).

    ``delta`` selects delta rather than state-of-the-world ADS on both sides; ``auth``
    is :class:`ServiceProcess`'s; the session (total timeout ``timeout_s``) sends
    ``headers`` with every request. On exit the session is closed, the control plane
    stopped (SIGTERM, in a thread so loopback fakes on this loop keep answering) and
    then Envoy.
    """
    xds_port = free_port()
    async with running_envoy(
        workdir / "envoy", node_id="e2e-node", xds_port=xds_port, delta=delta
    ) as envoy:
        assert envoy.admin_url is not None
        service = ServiceProcess(
            workdir / "cp",
            registry_yaml,
            env=env,
            delta=delta,
            auth=auth,
            grants=grants,
            xds_port=xds_port,
            envoy_admin_port=int(envoy.admin_url.rsplit(":", 1)[1]),
        )
        service.start()
        try:
            await service.wait_ready()
            timeout = aiohttp.ClientTimeout(total=timeout_s)
            async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
                yield Stack(service, envoy, session, dict(ports or {}))
        finally:
            await asyncio.to_thread(service.stop)
