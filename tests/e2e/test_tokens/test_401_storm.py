"""A 401 storm refreshes the token early, read from a real Envoy's counters.

The vendor revokes every token it issued (the loopback token endpoint forgets them), so
Envoy's ``cluster.<id>.upstream_rq_401`` climbs; the control plane's watch, which asks
Envoy for those counters alone, sees the storm within one interval and has the broker
fetch a new token long before the old one would expire.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.fake_token_endpoint import running_token_endpoint
from tests.support.ports import free_port
from tests.support.stack import running_stack
from tests.support.waiting import wait_until

pytestmark = pytest.mark.envoy

CLIENT_ID = "e2e-storm-client"
CLIENT_SECRET = "e2e-storm-client-secret-8Jp2"


async def test_a_401_storm_gets_a_new_token_early(tmp_path: Path) -> None:
    async with running_token_endpoint(
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, expires_in=3600
    ) as fake:
        port = free_port()
        registry = {
            "integrations": [
                {
                    "id": "ledger",
                    "kind": "http",
                    "upstream": fake.url,
                    "listen_port": port,
                    "credentials": {
                        "client_id": "env:E2E_TOKEN_ID",
                        "client_secret": "env:E2E_TOKEN_SECRET",
                    },
                    "settings": {"token": {"token_url": fake.token_url}},
                }
            ]
        }
        env = {
            "E2E_TOKEN_ID": CLIENT_ID,
            "E2E_TOKEN_SECRET": CLIENT_SECRET,
            "INTEGRATION_SERVICE_TOKEN_401_INTERVAL": "0.5",
            "INTEGRATION_SERVICE_TOKEN_401_THRESHOLD": "5",
        }
        async with running_stack(
            tmp_path, json.dumps(registry), env=env, ports={"ledger": port}
        ) as stack:

            async def status() -> int:
                async with stack.session.get(stack.sidecar("ledger", "/v1/entries")) as response:
                    return response.status

            async def ok() -> bool:
                return await status() == 200

            await wait_until(ok, deadline_s=20, message="requests carry a valid token")
            assert len(fake.token_requests) == 1
            fake.issued.clear()  # the vendor revokes every token: each request is a 401

            async def refreshed() -> bool:
                await status()  # keep the storm going until the new token lands
                return len(fake.token_requests) >= 2 and await status() == 200

            await wait_until(refreshed, deadline_s=15, message="an early refresh after 401s")
            assert fake.verdicts["unknown"] >= 5
