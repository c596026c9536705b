"""The embedded default: the app's in-process bus carries registry events through the
outbox, and ``agent.executed`` usage shows in the status API and in ``/metrics``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from control_plane.app import create_app
from control_plane.cloudevents import make_event
from control_plane.events.bus import InProcessBus, Message
from control_plane.keys import EVENTS
from control_plane.settings import load_settings
from tests.support.waiting import wait_until


async def test_in_process_events_and_usage(tmp_path: Path) -> None:
    (tmp_path / "integrations.yaml").write_text("integrations: []\n")
    (tmp_path / "rate_limits.yaml").write_text("rules: {}\n")
    settings = load_settings(
        # The management API's own security is not under test here.
        {"INTEGRATION_SERVICE_AUTH": "disabled"},
        config_file=tmp_path / "no-service-config.yaml",
        data_dir=tmp_path / "data",
        integrations_file=tmp_path / "integrations.yaml",
        rate_limits_file=tmp_path / "rate_limits.yaml",
        xds_port=0,
        envoy_admin_port=0,
    )
    app = create_app(settings, environ={})
    runtime = app[EVENTS]
    assert isinstance(runtime.bus, InProcessBus), "no REDIS_URL: the embedded bus"
    seen: list[dict[str, Any]] = []

    async def observe(message: Message) -> None:
        seen.append(message.json())

    runtime.bus.subscribe(["integration.*"], observe)
    async with TestClient(TestServer(app)) as client:
        created = await client.post(
            "/integrations",
            json={
                "id": "crm",
                "kind": "http",
                "tenant": "acme",
                "upstream": "https://crm.example.com",
            },
        )
        assert created.status == 201, await created.text()
        await wait_until(lambda: [e["type"] for e in seen] == ["integration.registered"])
        assert seen[0]["data"]["id"] == "crm" and seen[0]["tenant"] == "acme"
        assert created.headers.get("X-Correlation-ID", seen[0].get("correlationid")) == seen[0].get(
            "correlationid"
        )

        executed = make_event(
            "agent.executed", {"integrations": [{"id": "crm", "calls": 2}]}, tenant="acme"
        )
        await runtime.bus.publish(executed)
        await wait_until(lambda: runtime.consumer.stats["processed"] == 1)

        status = await (await client.get("/integrations/crm/status")).json()
        assert status["usage"] == {"acme": {"executions": 1, "calls": 2}}
        metrics = await (await client.get("/metrics")).text()
        assert 'integration_service_agent_calls_total{integration="crm",tenant="acme"} 2.0' in (
            metrics
        )
        assert 'integration_service_events_published_total{type="integration.registered"} 1.0' in (
            metrics
        )
