"""Upstreams + real Envoy + the control plane as a subprocess, for probe e2e tests.

Envoy runs beside the control plane (``--no-envoy``), as in Kubernetes; the control plane
probes through Envoy's listeners and reads Envoy's admin API for its counters.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tests.support.stack import Stack, running_stack

__all__ = ["ADMIN_KEY", "ProbeStack", "probe_stack"]

# The management API's admin key for these stacks (ignored where the API has no auth).
ADMIN_KEY = "probe-e2e-admin-key-0123456789abcdefghijklmnop"


class ProbeStack(Stack):
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
    service_env = {
        "INTEGRATION_SERVICE_PROBE_ENABLED": "false",
        "INTEGRATION_SERVICE_ADMIN_KEY": "env:E2E_ADMIN_KEY",
        "E2E_ADMIN_KEY": ADMIN_KEY,
        **(env or {}),
    }
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with running_stack(
        workdir, registry_yaml, env=service_env, timeout_s=30, headers=headers
    ) as s:
        yield ProbeStack(s.service, s.envoy, s.session)
