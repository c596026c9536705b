"""The embedded Envoy under EnvoySupervisor, with the shared bootstrap.

No control plane listens on the xDS port: Envoy still starts, serves its admin API, and
keeps retrying ADS, which is exactly the "control plane is down" case the sidecar must
survive.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from control_plane.sidecar.admin import EnvoyAdmin
from control_plane.sidecar.bootstrap import render_bootstrap
from control_plane.sidecar.supervisor import EnvoyStartError, EnvoySupervisor
from tests.support.ports import free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.envoy

NODE_ID = "sidecar-e2e"


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _shared_memory_segment(supervisor: EnvoySupervisor) -> Path:
    base_id = int(supervisor.base_id_path.read_text(encoding="utf-8"))
    # Hot-restart shared memory of this Envoy (see EnvoySupervisor._remove_shared_memory).
    return Path("/dev/shm") / f"envoy_shared_memory_{base_id * 10}"  # noqa: S108


def _supervisor(data_dir: Path, xds_port: int) -> EnvoySupervisor:
    bootstrap = render_bootstrap(NODE_ID, "e2e", "127.0.0.1", xds_port, admin_port=0)
    return EnvoySupervisor(
        bootstrap,
        data_dir,
        stop_drain_s=0.2,
        terminate_timeout=5.0,
        restart_backoff_s=0.1,
    )


@pytest.fixture
def xds_port() -> int:
    return free_port()  # nothing listens here


@pytest.fixture
async def envoy(tmp_path: Path, xds_port: int) -> AsyncIterator[EnvoySupervisor]:
    supervisor = _supervisor(tmp_path / "envoy", xds_port)
    await supervisor.start()
    try:
        yield supervisor
    finally:
        await supervisor.stop()


async def test_admin_on_port_zero_is_discovered(envoy: EnvoySupervisor, xds_port: int) -> None:
    assert envoy.running and envoy.pid is not None
    assert envoy.admin_url is not None
    written = envoy.admin_address_path.read_text(encoding="utf-8").strip()
    assert envoy.admin_url == f"http://{written}"
    assert not written.endswith(":0")

    async with envoy.admin() as admin:
        info = await admin.server_info()
        stats = await admin.stats()
        clusters = await admin.clusters()
        prometheus = await admin.stats_prometheus()
        static = await admin.config_dump("static_clusters")

    assert info.node_id == NODE_ID
    assert info.version.split("/")[1].startswith("1.")
    # Without a control plane Envoy waits in PRE_INITIALIZING until initial_fetch_timeout.
    assert info.state in {"PRE_INITIALIZING", "INITIALIZING", "LIVE"}
    assert info.raw["command_line_options"]["concurrency"] == 1

    assert "server.live" in stats
    assert "cluster_manager.active_clusters" in stats

    (host,) = clusters["xds_cluster"].hosts
    assert host.address == f"127.0.0.1:{xds_port}"
    assert not clusters["xds_cluster"].added_via_api
    assert {t.priority for t in clusters["xds_cluster"].circuit_breakers} == {"DEFAULT", "HIGH"}

    assert "envoy_server_live" in prometheus
    # With ?resource= Envoy lists the matching entries themselves under "configs".
    names = [c["cluster"]["name"] for c in static["configs"]]
    assert names == ["xds_cluster"]


async def test_ready_goes_live_without_control_plane(envoy: EnvoySupervisor) -> None:
    # A pod must become ready even when the control plane is not up yet. Envoy waits for
    # CDS, then for LDS, each up to initial_fetch_timeout (10 s in envoy/bootstrap.yaml): LIVE
    # comes after about 20 s (measured: PRE_INITIALIZING -> INITIALIZING at 10 s -> LIVE at 20 s).
    async with asyncio.timeout(30):
        await envoy.wait_ready()
    async with envoy.admin() as admin:
        assert await admin.ready()
        assert (await admin.server_info()).state == "LIVE"


async def test_killed_envoy_is_restarted(envoy: EnvoySupervisor) -> None:
    restarted = asyncio.Event()
    envoy.on_restart.append(lambda supervisor: restarted.set())
    old_pid = envoy.pid
    assert old_pid is not None
    old_segment = _shared_memory_segment(envoy)

    os.kill(old_pid, signal.SIGKILL)
    async with asyncio.timeout(30):
        await restarted.wait()

    assert envoy.restarts == 1
    assert envoy.running
    assert envoy.pid not in (None, old_pid)
    assert not _process_exists(old_pid)
    assert not old_segment.exists()
    assert envoy.admin_url is not None
    async with EnvoyAdmin(envoy.admin_url) as admin:
        assert (await admin.server_info()).node_id == NODE_ID


async def test_stop_leaves_no_process(tmp_path: Path, xds_port: int) -> None:
    supervisor = _supervisor(tmp_path / "envoy", xds_port)
    await supervisor.start()
    try:
        pid = supervisor.pid
        assert pid is not None
        segment = _shared_memory_segment(supervisor)
    finally:
        await supervisor.stop()
    assert not supervisor.running
    assert supervisor.pid is None and supervisor.admin_url is None
    assert not _process_exists(pid)
    assert not segment.exists()
    assert supervisor.restarts == 0
    # Envoy logged a clean shutdown to the log file, after the drain request.
    log = supervisor.log_path.read_text(encoding="utf-8")
    assert "exiting" in log


async def test_two_envoys_on_one_host(tmp_path: Path, xds_port: int) -> None:
    first = _supervisor(tmp_path / "one", xds_port)
    second = _supervisor(tmp_path / "two", xds_port)
    async with first, second:
        assert first.admin_url != second.admin_url
        await wait_until(lambda: first.running and second.running, message="both running")
        assert first.base_id_path.read_text() != second.base_id_path.read_text()


async def test_bad_bootstrap_fails_start_and_leaves_no_process(tmp_path: Path) -> None:
    supervisor = EnvoySupervisor("static_resources: {clusters: [{}]}\n", tmp_path / "bad")
    with pytest.raises(EnvoyStartError, match="exited"):
        await supervisor.start()
    assert not supervisor.running
    await supervisor.stop()
