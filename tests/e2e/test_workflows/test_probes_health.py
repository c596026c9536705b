"""Periodic health checks feed ``/integrations/{id}/health`` with thresholds, and
``integration-service test`` prints the probe table -- through real Envoy."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.probe_stack import ADMIN_KEY, ProbeStack, probe_stack
from tests.support.upstream import running_upstream
from tests.support.waiting import wait_until

pytestmark = pytest.mark.envoy

ROOT = Path(__file__).resolve().parents[3]


def _registry(upstream_url: str, ports: dict[str, int]) -> str:
    items = [
        {
            "id": "api",
            "kind": "http",
            "upstream": upstream_url,
            "listen_port": ports["api"],
            # Kept out of outlier ejection, so the recovery is seen at the next probe.
            "policies": {"outlier_detection": {"enabled": False}},
        },
        {
            "id": "api-down",
            "kind": "http",
            "upstream": f"http://127.0.0.1:{free_port()}",
            "listen_port": ports["api-down"],
        },
        {"id": "off", "kind": "http", "upstream": upstream_url, "enabled": False},
    ]
    return json.dumps({"integrations": items})


async def _state(stack: ProbeStack, ident: str, wanted: str) -> bool:
    return bool((await stack.health(ident))["state"] == wanted)


async def test_periodic_checks_apply_thresholds(tmp_path: Path) -> None:
    env = {
        "INTEGRATION_SERVICE_PROBE_ENABLED": "true",
        "INTEGRATION_SERVICE_PROBE_INTERVAL": "0.3",
        "INTEGRATION_SERVICE_PROBE_TIMEOUT": "3",
        "INTEGRATION_SERVICE_PROBE_UNHEALTHY_THRESHOLD": "3",
        "INTEGRATION_SERVICE_PROBE_HEALTHY_THRESHOLD": "2",
    }
    ports = {"api": free_port(), "api-down": free_port()}
    async with running_upstream() as upstream:
        async with probe_stack(tmp_path, _registry(upstream.url, ports), env) as stack:
            await wait_until(lambda: _state(stack, "api", "healthy"), deadline_s=15)
            await wait_until(lambda: _state(stack, "api-down", "unhealthy"), deadline_s=15)
            down = await stack.health("api-down")
            assert down["last_probe"]["step"] == "connect"

            upstream.status = 500
            await wait_until(lambda: _state(stack, "api", "unhealthy"), deadline_s=15)
            health = await stack.health("api")
            assert health["last_probe"]["ok"] is False
            assert health["last_probe"]["step"] == "request"
            assert health["last_probe"]["detail"] == "GET / -> 500"
            probes_seen = len(upstream.requests)
            assert probes_seen >= 3 + 2, "two passes before healthy, three failures after"

            upstream.status = 200
            await wait_until(lambda: _state(stack, "api", "healthy"), deadline_s=15)

            async with stack.session.post(stack.api("/integrations/off/test")) as response:
                assert response.status == 409
                assert "disabled" in (await response.json())["detail"]


async def _cli(stack: ProbeStack, *ids: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "control_plane.cli", "test", "--url", stack.service.base_url, *ids,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=ROOT,
        env={**os.environ, "INTEGRATION_SERVICE_TOKEN": ADMIN_KEY},
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_cli_prints_probe_table(tmp_path: Path) -> None:
    ports = {"api": free_port(), "api-down": free_port()}
    async with running_upstream() as upstream:
        async with probe_stack(tmp_path, _registry(upstream.url, ports)) as stack:
            code, out = await _cli(stack, "api", "api-down", "nope")
            lines = out.splitlines()
            assert lines[0].split() == ["ID", "KIND", "PORT", "OK", "LATENCY", "FAILING", "STEP"]
            rows = {line.split()[0]: line for line in lines[1:]}
            assert rows["api"].split()[:4] == ["api", "http", str(ports["api"]), "yes"]
            assert rows["api"].split()[5] == "ms"
            down = rows["api-down"].split()
            assert down[:4] == ["api-down", "http", str(ports["api-down"]), "NO"]
            assert "connect: Envoy could not connect to the upstream" in rows["api-down"]
            assert "unknown integration" in rows["nope"]
            assert code == 1, out

            code, out = await _cli(stack, "api")
            assert code == 0, out
            assert len(out.splitlines()) == 2

            # Without ids: every enabled integration ("off" is disabled).
            code, out = await _cli(stack)
            assert sorted(line.split()[0] for line in out.splitlines()[1:]) == ["api", "api-down"]
