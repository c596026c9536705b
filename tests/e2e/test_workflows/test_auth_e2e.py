"""The real service with authentication on, beside a real Envoy: an admin key registers a
loopback upstream (the harness allow-lists 127.0.0.0/8), traffic flows through the
sidecar, a viewer key reads but cannot write, a revoked key fails at once, and neither
keys nor credential values reach the service log."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from tests.support.envoy import dynamic_listeners
from tests.support.ports import free_port
from tests.support.stack import running_stack
from tests.support.upstream import running_upstream
from tests.support.waiting import wait_until

pytestmark = pytest.mark.envoy

SECRET = "sk_test_auth_e2e_Hq2m7Xv"


async def test_authenticated_lifecycle_through_envoy(tmp_path: Path) -> None:
    listen_port = free_port()
    async with (
        running_upstream() as upstream,
        running_stack(
            tmp_path, "integrations: []\n", env={"E2E_STRIPE_KEY": SECRET}, auth=True
        ) as stack,
        aiohttp.ClientSession(
            stack.service.base_url, timeout=aiohttp.ClientTimeout(total=15)
        ) as api,
    ):
        admin = stack.service.admin_headers
        async with api.get("/health/ready") as response:
            assert "X-Integration-Service-Auth" not in response.headers
        async with api.get("/integrations") as response:
            assert response.status == 401
        document = {
            "id": "billing",
            "kind": "stripe",
            "tenant": "acme",
            "upstream": upstream.url,
            "listen_port": listen_port,
            "credentials": {"api_key": "env:E2E_STRIPE_KEY"},
        }
        async with api.post("/integrations", json=document, headers=admin) as response:
            assert response.status == 201, await response.text()

        async def listener_up() -> bool:
            # Active, not merely known: a warming listener does not accept connections yet.
            listener = dynamic_listeners(await stack.config_dump()).get("billing", {})
            return "active_state" in listener

        await wait_until(listener_up, deadline_s=20, message="listener pushed")
        url = f"http://127.0.0.1:{listen_port}/v1/balance"
        async with stack.session.get(url) as response:
            assert response.status == 200
        assert upstream.requests[-1]["headers"]["Authorization"] == f"Bearer {SECRET}"

        body = {"name": "dashboards", "role": "viewer", "tenant": "acme"}
        async with api.post("/api-keys", json=body, headers=admin) as response:
            assert response.status == 201
            created = await response.json()
        viewer = {"Authorization": f"Bearer {created['key']}"}
        async with api.get("/integrations/billing/status", headers=viewer) as response:
            assert response.status == 200
        async with api.delete("/integrations/billing", headers=viewer) as response:
            assert response.status == 403
        async with api.delete(f"/api-keys/{created['id']}", headers=admin) as response:
            assert response.status == 204
        async with api.get("/integrations/billing", headers=viewer) as response:
            assert response.status == 401
        async with api.get("/audit", headers=admin) as response:
            actions = [e["action"] for e in (await response.json())["items"]]
        assert actions == ["api_key.revoke", "api_key.create", "integration.create"]
    log = stack.service.log()
    assert "authentication failed" in log
    for value in (SECRET, stack.service.admin_key, created["key"]):
        assert value not in log
