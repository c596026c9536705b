"""Bad configuration while running: an invalid registry file, and a config Envoy rejects.

Neither may disturb traffic: the file is validated before anything is translated (the last
good registry stays in force), and a NACKed xDS update leaves Envoy on its last accepted
version; the control plane records the NACK and does not re-push the same rejected
resources (https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#ack-nack-and-resource-type-instance-version).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from control_plane.sidecar.admin import EnvoyAdmin
from tests.e2e.faults.ledger import Figures
from tests.e2e.faults.load import SteadyLoad
from tests.e2e.faults.stack import Api, running_service
from tests.support.envoy import dynamic_listeners
from tests.support.ports import free_port
from tests.support.service import ServiceProcess
from tests.support.upstream import running_upstream
from tests.support.waiting import wait_until
from tests.unit.test_bounded_yaml import _laughs

pytestmark = pytest.mark.envoy

INVALID = """integrations:
  - id: orders
    kind: carrier-pigeon
    upstream: http://127.0.0.1:9
  - id: Not_A_Label
    kind: http
"""


def _yaml(upstream: str, ports: dict[str, int]) -> str:
    return "integrations:\n" + "".join(
        f"  - id: {ident}\n    kind: http\n    upstream: {upstream}\n    listen_port: {port}\n"
        for ident, port in ports.items()
    )


async def _listeners(service: ServiceProcess) -> dict[str, Any]:
    async with EnvoyAdmin(f"http://127.0.0.1:{service.envoy_admin_port}") as admin:
        return dynamic_listeners(await admin.config_dump())


async def test_invalid_registry_file_rejected_last_good_kept(
    tmp_path: Path, measure: Callable[[str], Figures]
) -> None:
    figures = measure("invalid_registry_file")
    ports = {"orders": free_port()}
    async with running_upstream() as upstream:
        async with running_service(tmp_path, _yaml(upstream.url, ports)) as (service, api):
            version = (await service.wait_ready())["checks"]["config"]["version"]
            async with SteadyLoad(
                f"http://127.0.0.1:{ports['orders']}/", count=150, interval_s=0.02
            ) as load:
                written = time.monotonic()
                service.integrations_file.write_text(INVALID)

                async def rejected() -> bool:
                    body = await api.ok("/health")
                    return bool(body["checks"]["registry"]["file_error"])

                await wait_until(rejected, deadline_s=10, message="invalid file reported")
                detected_s = time.monotonic() - written
                health = await api.ok("/health")
                ready = await api.get("/health/ready")
                listeners = await _listeners(service)
                result = await load.wait()

            # The operator fixes the file: it is applied, and the error clears.
            ports["later"] = free_port()
            service.integrations_file.write_text(_yaml(upstream.url, ports))

            async def fixed() -> bool:
                body = await api.ok("/health")
                return body["checks"]["registry"]["file_error"] is None

            await wait_until(fixed, deadline_s=10, message="fixed file applied")
            await wait_until(lambda: _has(service, "later"), deadline_s=10, message="new listener")
            log = service.log()

    file_error = health["checks"]["registry"]["file_error"]
    figures.update(
        {
            "detected_after_s": round(detected_s, 2),
            "requests_sent": result.sent,
            "requests_failed": result.failed,
            "ready_while_rejected": ready.status,
            "version_kept": ready.body["checks"]["config"]["version"] == version,
            "error_in_health": bool(file_error),
            "error_in_log": "integrations file rejected" in log,
        }
    )
    assert "carrier-pigeon" in file_error and "Not_A_Label" in file_error
    assert set(listeners) == {"orders"}, "last good registry still served"
    assert result.failed == 0 and result.sent == 150
    assert ready.status == 200 and ready.body["checks"]["config"]["version"] == version
    assert "last good registry stays in force" in log


async def test_yaml_alias_bomb_refused_service_keeps_answering(
    tmp_path: Path, measure: Callable[[str], Figures]
) -> None:
    figures = measure("yaml_alias_bomb")
    ports = {"orders": free_port()}
    bomb = _laughs()  # 9 levels of 9 aliases: 9**9 nodes once expanded
    async with running_upstream() as upstream:
        async with running_service(tmp_path, _yaml(upstream.url, ports)) as (service, api):
            version = (await service.wait_ready())["checks"]["config"]["version"]
            assert service.process is not None
            rss_before = _rss_kib(service.process.pid)
            async with SteadyLoad(
                f"http://127.0.0.1:{ports['orders']}/", count=150, interval_s=0.02
            ) as load:
                written = time.monotonic()
                service.integrations_file.write_text(bomb)

                async def rejected() -> bool:
                    body = await api.ok("/health")
                    return bool(body["checks"]["registry"]["file_error"])

                await wait_until(rejected, deadline_s=10, message="bomb reported")
                detected_s = time.monotonic() - written
                started = time.monotonic()
                live = await api.get("/health/live")  # the loop is not stuck expanding
                live_ms = (time.monotonic() - started) * 1000
                health = await api.ok("/health")
                ready = await api.get("/health/ready")
                listeners = await _listeners(service)
                result = await load.wait()
            rss_after = _rss_kib(service.process.pid)

    file_error = health["checks"]["registry"]["file_error"]
    figures.update(
        {
            "bomb_bytes": len(bomb),
            "detected_after_s": round(detected_s, 2),
            "live_answer_ms": round(live_ms, 1),
            "rss_growth_mib": round((rss_after - rss_before) / 1024, 1),
            "requests_sent": result.sent,
            "requests_failed": result.failed,
            "ready_while_refused": ready.status,
            "version_kept": ready.body["checks"]["config"]["version"] == version,
        }
    )
    assert "YAML refused" in file_error and "aliases" in file_error
    assert live.status == 200
    assert set(listeners) == {"orders"}, "last good registry still served"
    assert result.failed == 0 and result.sent == 150
    assert ready.status == 200 and ready.body["checks"]["config"]["version"] == version
    assert rss_after - rss_before < 100 * 1024, "no expansion in memory"


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


async def _has(service: ServiceProcess, ident: str) -> bool:
    return ident in await _listeners(service)


async def _listener_state(api: Api, ident: str) -> dict[str, Any]:
    status = await api.ok(f"/integrations/{ident}/status")
    listener: dict[str, Any] = status["config"]["types"]["listener"]
    return {"state": status["config"]["state"], **listener}


async def test_rejected_config_nack_recorded_envoy_keeps_serving_no_push_loop(
    tmp_path: Path, measure: Callable[[str], Figures]
) -> None:
    figures = measure("envoy_nack")
    ports = {"orders": free_port()}
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    taken = blocker.getsockname()[1]  # Envoy cannot bind it: the listener is rejected
    try:
        async with (
            running_upstream() as upstream,
            running_service(tmp_path, _yaml(upstream.url, ports)) as (service, api),
            SteadyLoad(f"http://127.0.0.1:{ports['orders']}/", count=200, interval_s=0.02) as load,
        ):
            doc = {"id": "clash", "kind": "http", "upstream": upstream.url, "listen_port": taken}
            created = await api.post("/integrations", doc)
            assert created.status == 201, created
            posted = time.monotonic()

            async def nacked() -> bool:
                return bool((await _listener_state(api, "clash"))["state"] == "nacked")

            await wait_until(nacked, deadline_s=10, message="NACK recorded")
            nack_s = time.monotonic() - posted
            at_nack = await _listener_state(api, "clash")
            ready = await api.get("/health/ready")
            await asyncio.sleep(3.0)  # a push loop would show up as a growing push_count
            later = await _listener_state(api, "clash")
            listeners = await _listeners(service)
            result = await load.wait()

            removed = await api.call("DELETE", "/integrations/clash")
            assert removed.status == 204, removed
            recovered = await service.wait_ready(deadline_s=15)
    finally:
        blocker.close()

    message = at_nack["last_nack"]["message"]
    figures.update(
        {
            "nack_recorded_after_s": round(nack_s, 2),
            "pushes_at_nack": at_nack["push_count"],
            "pushes_3s_later": later["push_count"],
            "requests_sent": result.sent,
            "requests_failed": result.failed,
            "ready_while_nacked": ready.status,
            "ready_after_removal": "ready" if recovered["status"] == "ready" else "not ready",
            "nack_message": message[:120],
        }
    )
    assert str(taken) in message or "bind" in message.lower(), message
    assert later["push_count"] == at_nack["push_count"], "no push loop"
    assert "active_state" in listeners["orders"], "previous config still active"
    # Envoy lists the refused listener with its error_state only; it never became active.
    assert "active_state" not in listeners.get("clash", {})
    assert recovered["status"] == "ready", "ready again once the refused listener is gone"
    assert result.failed == 0 and result.sent == 200
    assert ready.status == 503, "a NACKed version is not ready"
