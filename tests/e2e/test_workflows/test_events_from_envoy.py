"""Events derived from the real data plane reach Redis: rate-limit rejections counted by
Envoy, an outlier ejection opening and closing the circuit breaker, and probe results."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from control_plane.events.bus import Message
from control_plane.events.redis_bus import RedisBus
from tests.support.ports import free_port
from tests.support.stack import running_stack
from tests.support.upstream import running_upstream
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.envoy, pytest.mark.redis]


async def test_rate_limit_breaker_and_health_events(tmp_path: Path, redis_url: str) -> None:
    suffix = uuid.uuid4().hex[:6]  # the session's Redis is shared: our own ids only
    limited, flaky = f"limited-{suffix}", f"flaky-{suffix}"
    ports = {limited: free_port(), flaky: free_port()}
    events: list[dict[str, Any]] = []

    async def collect(message: Message) -> None:
        envelope = message.json()
        if envelope.get("subject") in ports:
            events.append(envelope)

    def of(event_type: str) -> list[dict[str, Any]]:
        return [e for e in events if e["type"] == event_type]

    subscriber = RedisBus(redis_url)
    subscriber.subscribe(["integration.*"], collect)
    await subscriber.start()
    try:
        async with running_upstream() as ok, running_upstream(status=503) as bad:
            registry = f"""
integrations:
  - id: {limited}
    kind: http
    tenant: acme
    upstream: {ok.url}
    listen_port: {ports[limited]}
    policies:
      rate_limit: {{requests: 1, per: 1h, burst: 2}}
  - id: {flaky}
    kind: http
    upstream: {bad.url}
    listen_port: {ports[flaky]}
    policies:
      retries: {{max_retries: 0}}
      # Ejected for 3 s: longer than the stats watcher's 2 s poll, so the open state is
      # always sampled (a 1 s ejection could start and end between two polls).
      outlier_detection: {{consecutive_5xx: 3, interval: 1s, base_ejection_time: 3s}}
"""
            env = {"REDIS_URL": redis_url, "INTEGRATION_SERVICE_PROBE_ENABLED": "false"}
            async with running_stack(tmp_path, registry, env=env, ports=ports) as stack:
                await wait_until(lambda: subscriber.connected, message="subscribed")
                codes = []
                for _ in range(5):
                    async with stack.session.get(stack.sidecar(limited)) as r:
                        codes.append(r.status)
                assert codes.count(429) == 3
                for _ in range(3):
                    async with stack.session.get(stack.sidecar(flaky)) as r:
                        assert r.status == 503
                bad.status = 200  # the ejection ends after base_ejection_time

                await wait_until(
                    lambda: bool(of("integration.rate_limit_exceeded")),
                    deadline_s=10,
                    message="429s",
                )
                data = of("integration.rate_limit_exceeded")[0]["data"]
                assert data["id"] == limited and data["rate_limited"] == 3
                assert of("integration.rate_limit_exceeded")[0]["tenant"] == "acme"

                await wait_until(
                    lambda: bool(of("integration.circuit_breaker_closed")),
                    deadline_s=15,
                    message="closed",
                )
                opened = of("integration.circuit_breaker_opened")
                assert opened and opened[0]["data"]["reasons"] == ["outlier_ejection"]
                assert events.index(opened[0]) < events.index(
                    of("integration.circuit_breaker_closed")[0]
                )

                for ident in ports:  # on-demand probes notify the same callbacks
                    url = stack.api(f"/integrations/{ident}/test")
                    async with stack.session.post(url) as r:
                        assert r.status in (200, 503), await r.text()
                await wait_until(
                    lambda: {e["subject"] for e in of("integration.health_check")} == set(ports),
                    deadline_s=10,
                    message="probe results",
                )
    finally:
        await subscriber.stop()
