"""Upstreams + real Envoy + the control plane as a subprocess, for probe e2e tests.

Envoy runs beside the control plane (``--no-envoy``), as in Kubernetes; the control plane
probes through Envoy's listeners and reads Envoy's admin API for its counters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from control_plane.sidecar.supervisor import EnvoySupervisor
from tests.support.envoy import running_envoy
from tests.support.ports import free_port
from tests.support.service import ServiceProcess

__all__ = ["ADMIN_KEY", "ProbeStack", "probe_stack"]

# The management API's admin key for these stacks (ignored where the API has no auth).
ADMIN_KEY = "probe-e2e-admin-key-0123456789abcdefghijklmnop"


@dataclass
class ProbeStack:
    service: ServiceProcess
    envoy: EnvoySupervisor
    session: aiohttp.ClientSession

    def api(self, path: str) -> str:
        return self.service.base_url + path

    async def test(self, ident: str) -> dict[str, Any]:
        """``POST /integrations/{ident}/test``: the probe result (asserting a 200)."""
        async with self.session.post(self.api(f"/integrations/{ident}/test")) as response:
            body: dict[str, Any] = await response.json(content_type=None)
            assert response.status == 200, body
            return body

    async def health(self, ident: str) -> dict[str, Any]:
        async with self.session.get(self.api(f"/integrations/{ident}/health")) as response:
            body: dict[str, Any] = await response.json()
            assert response.status == 200, body
            return body


@asynccontextmanager
async def probe_stack(
    workdir: Path, registry_yaml: str, env: Mapping[str, str] | None = None
) -> AsyncIterator[ProbeStack]:
    xds_port = free_port()
    async with running_envoy(
        workdir / "envoy", node_id="e2e-node", xds_port=xds_port, delta=True
    ) as envoy:
        assert envoy.admin_url is not None
        service = ServiceProcess(
            workdir / "cp",
            registry_yaml,
            env={
                "INTEGRATION_SERVICE_PROBE_ENABLED": "false",
                "INTEGRATION_SERVICE_ADMIN_KEY": "env:E2E_ADMIN_KEY",
                "E2E_ADMIN_KEY": ADMIN_KEY,
                **(env or {}),
            },
            xds_port=xds_port,
            envoy_admin_port=int(envoy.admin_url.rsplit(":", 1)[1]),
        )
        service.start()
        try:
            await service.wait_ready()
            timeout = aiohttp.ClientTimeout(total=30)
            headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
            async with aiohttp.ClientSession(timeout=timeout, headers=headers) as session:
                yield ProbeStack(service, envoy, session)
        finally:
            service.stop()
