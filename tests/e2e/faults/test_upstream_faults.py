"""Upstream faults, handled by Envoy alone: slow (route timeout), down (fail fast) and
flapping (outlier ejection, then return after ``base_ejection_time``).

Each test measures latencies through the sidecar; the bounds asserted are generous (loaded
CI machines), the figures recorded are what this run saw.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from control_plane.sidecar.admin import EnvoyAdmin
from tests.e2e.faults.ledger import Figures
from tests.e2e.faults.load import latency_figures, timed_get
from tests.e2e.faults.stack import running_service
from tests.support.ports import free_port
from tests.support.service import ServiceProcess
from tests.support.upstream import running_upstream
from tests.support.waiting import wait_until

pytestmark = pytest.mark.envoy

ROUTE_TIMEOUT_S = 1.0
SLOW_S = 5.0
BASE_EJECTION_S = 2.0


def _one(ident: str, upstream: str, port: int, policies: str) -> str:
    return (
        f"integrations:\n  - id: {ident}\n    kind: http\n    upstream: {upstream}\n"
        f"    listen_port: {port}\n    policies: {policies}\n"
    )


async def _stats(service: ServiceProcess) -> dict[str, int | float]:
    async with EnvoyAdmin(f"http://127.0.0.1:{service.envoy_admin_port}") as admin:
        return await admin.stats()


async def test_slow_upstream_is_bounded_by_the_route_timeout(
    tmp_path: Path, measure: Callable[[str], Figures]
) -> None:
    figures = measure("upstream_slow")
    port = free_port()
    policies = f"{{timeout: {ROUTE_TIMEOUT_S:g}s, retries: {{max_retries: 0}}}}"
    async with (
        running_upstream() as upstream,
        running_service(tmp_path, _one("slow", upstream.url, port, policies)),
        aiohttp.ClientSession() as session,
    ):
        base = f"http://127.0.0.1:{port}/"
        fast = [await timed_get(session, base + "fast") for _ in range(5)]
        slow = [await timed_get(session, f"{base}slow?delay={SLOW_S:g}") for _ in range(5)]

    slow_ms = [ms for _, ms, _ in slow]
    figures.update(
        {
            "route_timeout_ms": ROUTE_TIMEOUT_S * 1000,
            "upstream_delay_ms": SLOW_S * 1000,
            "requests_sent": len(fast) + len(slow),
            "slow_statuses": sorted({s for s, _, _ in slow}),
            **latency_figures(slow_ms, "slow"),
            **latency_figures([ms for _, ms, _ in fast], "fast"),
        }
    )
    assert [s for s, _, _ in fast] == [200] * 5
    assert [s for s, _, _ in slow] == [504] * 5, slow
    assert all(ROUTE_TIMEOUT_S * 1000 * 0.9 <= ms < SLOW_S * 1000 / 2 for ms in slow_ms)


async def test_down_upstream_fails_fast(tmp_path: Path, measure: Callable[[str], Figures]) -> None:
    figures = measure("upstream_down")
    port, dead = free_port(), free_port()  # nothing listens on ``dead``
    policies = "{timeout: 10s, connect_timeout: 1s}"
    async with (
        running_service(tmp_path, _one("down", f"http://127.0.0.1:{dead}", port, policies)) as (
            service,
            _,
        ),
        aiohttp.ClientSession() as session,
    ):
        answers = [await timed_get(session, f"http://127.0.0.1:{port}/x") for _ in range(20)]
        stats = await _stats(service)

    latencies = [ms for _, ms, _ in answers]
    figures.update(
        {
            "requests_sent": len(answers),
            "requests_503": sum(1 for s, _, _ in answers if s == 503),
            **latency_figures(latencies),
            "connect_failures": int(stats.get("cluster.down.upstream_cx_connect_fail", 0)),
        }
    )
    assert [s for s, _, _ in answers] == [503] * 20
    assert max(latencies) < 1000, "refused connections fail fast, well under connect_timeout"


async def test_flapping_upstream_is_ejected_then_returns(
    tmp_path: Path, measure: Callable[[str], Figures]
) -> None:
    figures = measure("upstream_flapping")
    port = free_port()
    policies = (
        "{retries: {max_retries: 0}, outlier_detection: {consecutive_5xx: 3, interval: 500ms,"
        f" base_ejection_time: {BASE_EJECTION_S:g}s, max_ejection_time: 10s}}}}"
    )
    async with (
        running_upstream() as upstream,
        running_service(tmp_path, _one("flappy", upstream.url, port, policies)) as (service, _),
        aiohttp.ClientSession() as session,
    ):
        url = f"http://127.0.0.1:{port}/flap"
        upstream.status = 503
        burst = [await timed_get(session, url) for _ in range(3)]

        async def ejected() -> bool:
            return (await _stats(service)).get(
                "cluster.flappy.outlier_detection.ejections_active"
            ) == 1

        await wait_until(ejected, deadline_s=5, message="host ejected")
        ejected_at = time.monotonic()
        upstream.status = 200  # the upstream has recovered, but Envoy does not know yet
        reached = len(upstream.requests)
        during = [await timed_get(session, url) for _ in range(10)]
        reached_during = len(upstream.requests) - reached

        async def back() -> bool:
            status, _, _ = await timed_get(session, url)
            return status == 200

        await wait_until(back, deadline_s=BASE_EJECTION_S + 5, interval_s=0.1, message="host back")
        returned_s = time.monotonic() - ejected_at
        after = [await timed_get(session, url) for _ in range(10)]
        stats = await _stats(service)

    figures.update(
        {
            "failing_requests_before_ejection": len(burst),
            "requests_while_ejected": len(during),
            "requests_reaching_upstream_while_ejected": reached_during,
            **latency_figures([ms for _, ms, _ in during], "ejected"),
            "base_ejection_time_s": BASE_EJECTION_S,
            "back_after_s": round(returned_s, 2),
            "requests_after_return_failed": sum(1 for s, _, _ in after if s != 200),
            "ejections_enforced": int(
                stats.get("cluster.flappy.outlier_detection.ejections_enforced_total", 0)
            ),
        }
    )
    assert [s for s, _, _ in burst] == [503] * 3
    assert [s for s, _, _ in during] == [503] * 10
    assert reached_during == 0, "failed fast in Envoy while ejected"
    assert BASE_EJECTION_S * 0.8 <= returned_s <= BASE_EJECTION_S + 5
    assert [s for s, _, _ in after] == [200] * 10
