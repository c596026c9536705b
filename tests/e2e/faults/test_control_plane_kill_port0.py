"""The control plane with ``xds_port: 0`` is SIGKILLed under steady traffic and restarted.

The embedded supervisor adopts the Envoy a crashed run left only when its bootstrap, which
names the xDS port, is unchanged. With port 0 the restarted control plane re-binds the
port of the previous run (kept in ``<data_dir>/xds-port``) while it is free, so the Envoy
serving the traffic is adopted, not replaced: the same pid, and no request fails (the
fixed-port case is ``test_control_plane_kill.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.faults.ledger import Figures
from tests.e2e.faults.load import SteadyLoad, latency_figures
from tests.e2e.faults.stack import running_service
from tests.support.ports import free_port
from tests.support.upstream import running_upstream
from tests.support.waiting import wait_until

pytestmark = pytest.mark.envoy

LOAD_REQUESTS = 300


def _envoy_pid(data_dir: Path) -> int:
    return int((data_dir / "envoy" / "envoy.pid").read_text().split()[0])


def _xds_ports(log: str) -> list[int]:
    """The port of each "xDS server listening" line of the service log, in order."""
    ports = []
    for line in log.splitlines():
        if "xDS server listening" in line:
            ports.append(int(json.loads(line)["port"]))
    return ports


async def test_sigkill_with_xds_port_zero_adopts_envoy_zero_failures(
    tmp_path: Path, measure: Callable[[str], Figures]
) -> None:
    port = free_port()
    yaml = (
        f"integrations:\n  - id: orders\n    kind: http\n    upstream: {{url}}\n"
        f"    listen_port: {port}\n"
    )
    data_dir = tmp_path / "data"
    async with (
        running_upstream() as upstream,
        running_service(
            tmp_path, yaml.format(url=upstream.url), env={"INTEGRATION_SERVICE_XDS_PORT": "0"}
        ) as (service, _api),
    ):
        version = (await service.wait_ready())["checks"]["config"]["version"]
        url = f"http://127.0.0.1:{port}/steady"
        async with SteadyLoad(url, count=LOAD_REQUESTS, interval_s=0.01) as load:
            await wait_until(lambda: load.result.sent >= 50, message="load running")
            pid_before = _envoy_pid(data_dir)  # the Envoy serving the traffic
            service.kill()
            down_from = load.result.sent

            def while_down() -> bool:  # requests served with no control plane at all
                return load.result.sent >= down_from + 50

            await wait_until(while_down, message="traffic without the control plane")
            service.start()
            ready = await service.wait_ready()
            ready_after = load.result.sent - down_from
            result = await load.wait()
        pid_after = _envoy_pid(data_dir)
        log = service.log()

    xds_ports = _xds_ports(log)
    figures = measure("control_plane_sigkill_port0")
    figures.update(
        {
            "requests_sent": result.sent,
            "requests_failed": result.failed,
            "requests_until_ready_again": ready_after,
            **latency_figures(result.latencies_ms),
            "envoy_pid_before": pid_before,
            "envoy_pid_after": pid_after,
            "xds_ports": "/".join(str(p) for p in xds_ports),
        }
    )
    print(f"\n{figures}")
    assert len(xds_ports) == 2 and xds_ports[0] != 0, log[-3000:]
    assert xds_ports[1] == xds_ports[0], "the restart re-bound the previous run's xDS port"
    assert pid_after == pid_before, "the running Envoy was adopted, not replaced"
    assert "envoy adopted from a previous run" in log
    assert ready["checks"]["config"]["version"] == version
    assert result.sent == LOAD_REQUESTS
    assert result.failed == 0, result.errors[:5]
