"""Envoy is SIGKILLed under the embedded supervisor: restarted, reconverged, readiness honest.

The supervisor waits on its child, respawns it after its back-off, and the new Envoy
fetches the current snapshot over ADS. ``/health/ready`` reports the gap: no Envoy admin
and no connected xDS node means 503 until the new Envoy has ACKed the current version.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from control_plane.sidecar.admin import EnvoyAdmin
from tests.e2e.faults.ledger import Figures
from tests.e2e.faults.load import SteadyLoad
from tests.e2e.faults.stack import running_service
from tests.support.envoy import dynamic_listeners
from tests.support.ports import free_port
from tests.support.upstream import running_upstream
from tests.support.waiting import wait_until

pytestmark = pytest.mark.envoy


def _pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


async def test_envoy_killed_supervisor_restarts_it_and_readiness_tracks_it(
    tmp_path: Path, measure: Callable[[str], Figures]
) -> None:
    figures = measure("envoy_sigkill")
    port = free_port()
    yaml = (
        f"integrations:\n  - id: orders\n    kind: http\n    upstream: {{url}}\n"
        f"    listen_port: {port}\n"
    )
    async with (
        running_upstream() as upstream,
        running_service(tmp_path, yaml.format(url=upstream.url)) as (service, api),
    ):
        version = (await service.wait_ready())["checks"]["config"]["version"]
        pid_file = tmp_path / "data" / "envoy" / "envoy.pid"
        old_pid = _pid(pid_file)
        assert old_pid is not None

        readiness: list[tuple[float, int]] = []
        stop_polling = asyncio.Event()

        async def poll_ready() -> None:
            while not stop_polling.is_set():
                answer = await api.get("/health/ready")
                readiness.append((time.monotonic(), answer.status))
                await asyncio.sleep(0.05)

        poller = asyncio.create_task(poll_ready())
        try:
            async with SteadyLoad(
                f"http://127.0.0.1:{port}/during", count=200, interval_s=0.02, timeout_s=2.0
            ) as load:
                await wait_until(lambda: load.result.sent >= 20, message="load running")
                killed = time.monotonic()
                os.kill(old_pid, signal.SIGKILL)

                def respawned() -> bool:
                    pid = _pid(pid_file)
                    return pid is not None and pid != old_pid

                await wait_until(respawned, deadline_s=20, message="Envoy respawned")
                respawn_s = time.monotonic() - killed
                ready = await service.wait_ready(deadline_s=30)
                ready_s = time.monotonic() - killed

                async def serves() -> bool:
                    url = f"http://127.0.0.1:{port}/after"
                    async with aiohttp.ClientSession() as session, session.get(url) as answer:
                        return answer.status == 200

                await wait_until(serves, deadline_s=10, message="listener serves again")
                serving_s = time.monotonic() - killed
                result = await load.wait()
        finally:
            stop_polling.set()
            await poller

        async with EnvoyAdmin(f"http://127.0.0.1:{service.envoy_admin_port}") as admin:
            dump = await admin.config_dump()
        listeners = dynamic_listeners(dump)

    after_kill = [status for at, status in readiness if at >= killed]
    not_ready = after_kill.count(503)
    figures.update(
        {
            "envoy_respawn_s": round(respawn_s, 2),
            "ready_again_s": round(ready_s, 2),
            "serving_again_s": round(serving_s, 2),
            "ready_polls_503": not_ready,
            "ready_polls_200_after": len(after_kill) - not_ready,
            "requests_sent": result.sent,
            "requests_failed_while_envoy_down": result.failed,
            "version_before": version[:12],
            "version_after": ready["checks"]["config"]["version"][:12],
        }
    )
    assert not_ready >= 1, "readiness said 503 while Envoy was gone"
    last_503 = max(i for i, status in enumerate(after_kill) if status == 503)
    back = after_kill[last_503 + 1 :]
    assert back and set(back) == {200}, "200 again once the new Envoy ACKed"
    assert set(after_kill) == {200, 503}
    assert ready["checks"]["config"]["version"] == version, "reconverged to the current version"
    assert set(listeners) == {"orders"}
    assert result.sent == 200
