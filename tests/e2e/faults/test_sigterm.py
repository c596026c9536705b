"""SIGTERM is a graceful stop: in-flight API requests finish, Consul forgets the instance,
the embedded Envoy is drained and stopped, and the process exits 0.

The in-flight request is ``POST /integrations/{id}/test``: a probe through Envoy against an
upstream that answers after ``PROBE_DELAY_S``, so it is certainly running when SIGTERM lands.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.faults.ledger import Figures
from tests.e2e.faults.stack import Answer, running_service, wait_exit
from tests.support.consul import running_consul
from tests.support.ports import free_port
from tests.support.upstream import running_upstream
from tests.support.waiting import wait_until

pytestmark = pytest.mark.envoy

PROBE_DELAY_S = 2.0


def _gone(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    # Gone, or a zombie nobody reaps (this sandbox's PID 1 does not reap orphans).
    return not status.exists() or "zombie" in status.read_text()


async def test_sigterm_finishes_in_flight_deregisters_drains_and_exits_0(
    tmp_path: Path, measure: Callable[[str], Figures]
) -> None:
    figures = measure("sigterm_graceful")
    port = free_port()
    async with running_upstream() as upstream, running_consul() as consul:
        yaml = (
            f"integrations:\n  - id: slowapi\n    kind: http\n    upstream: {upstream.url}\n"
            f"    listen_port: {port}\n"
            f"    settings: {{probe_path: '/probe?delay={PROBE_DELAY_S:g}'}}\n"
        )
        env = {"CONSUL_HOST": "127.0.0.1", "CONSUL_PORT": str(consul.port)}
        async with running_service(tmp_path, yaml, env=env) as (service, api):
            await wait_until(lambda: bool(consul.services), deadline_s=10, message="registered")
            (service_id,) = consul.services
            envoy_pid = int((tmp_path / "data" / "envoy" / "envoy.pid").read_text().split()[0])

            in_flight = asyncio.create_task(api.post("/integrations/slowapi/test"))
            await wait_until(
                lambda: any(r["path"].startswith("/probe") for r in upstream.requests),
                deadline_s=10,
                message="probe reached the upstream",
            )
            assert service.process is not None
            sidecar = asyncio.create_task(_sidecar_until_gone(port))
            service.process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            await asyncio.sleep(0.2)
            refused = await _new_request_refused(api.service.base_url)
            answer: Answer = await asyncio.wait_for(in_flight, 20)
            answered_s = time.monotonic() - signalled
            code = await wait_exit(service)
            exit_s = time.monotonic() - signalled
            served = await asyncio.wait_for(sidecar, 10)
        log = service.log()
        envoy_log = (tmp_path / "data" / "envoy" / "envoy.log").read_text(errors="replace")
        await wait_until(lambda: _gone(envoy_pid), deadline_s=5, message="Envoy gone")

    # Envoy got SIGTERM (not SIGKILL) from the supervisor, after the in-flight request.
    stopped_by_sigterm = "caught ENVOY_SIGTERM" in envoy_log and "exiting" in envoy_log
    figures.update(
        {
            "in_flight_status": answer.status,
            "in_flight_answered_after_sigterm_s": round(answered_s, 2),
            "new_connections_refused_during_shutdown": refused,
            "consul_deregistered": service_id not in consul.services,
            "sidecar_requests_during_shutdown": served["sent"],
            "sidecar_served_200_during_shutdown": served["ok"],
            "sidecar_connection_close_during_drain": served["drain_close"],
            "envoy_stopped_by_sigterm": stopped_by_sigterm,
            "envoy_stopped": _gone(envoy_pid),
            "exit_code": code,
            "exit_after_sigterm_s": round(exit_s, 2),
        }
    )
    assert answer.status == 200, answer
    assert answer.body["state"] == "healthy", answer.body
    assert code == 0, log[-3000:]
    assert consul.services == {} and ("deregister", service_id) in consul.requests
    assert stopped_by_sigterm, envoy_log[-2000:]
    assert "ignored SIGTERM" not in log
    assert served["ok"] > 0, "the sidecar kept serving while the control plane shut down"
    assert served["drain_close"] > 0, "Envoy drained: clients were told to reconnect"


async def _sidecar_until_gone(port: int, connections: int = 8) -> dict[str, int]:
    """Requests on ``connections`` kept-alive connections until Envoy stops answering.

    While Envoy drains (``drain_listeners?graceful`` with ``--drain-strategy immediate``)
    every HTTP/1.1 response carries ``Connection: close``; the last request of each
    connection fails when Envoy exits.
    """
    counts = {"sent": 0, "ok": 0, "drain_close": 0}
    url = f"http://127.0.0.1:{port}/during-shutdown"

    async def one() -> None:
        connector = aiohttp.TCPConnector(limit=1)
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            for _ in range(800):  # bounded: 800 x 25 ms = 20 s at most
                counts["sent"] += 1
                try:
                    async with session.get(url) as answer:
                        counts["ok"] += answer.status == 200
                        counts["drain_close"] += answer.headers.get("Connection") == "close"
                except (aiohttp.ClientError, TimeoutError):
                    return
                await asyncio.sleep(0.025)

    await asyncio.gather(*(one() for _ in range(connections)))
    return counts


async def _new_request_refused(base_url: str) -> bool:
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{base_url}/health/live", timeout=aiohttp.ClientTimeout(total=2)),
        ):
            return False
    except (aiohttp.ClientError, TimeoutError):
        return True
