"""The embedded Envoy under EnvoySupervisor, with the shared bootstrap.

No control plane listens on the xDS port: Envoy still starts, serves its admin API, and
keeps retrying ADS, which is exactly the "control plane is down" case the sidecar must
survive.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from control_plane.sidecar.admin import EnvoyAdmin
from control_plane.sidecar.bootstrap import render_bootstrap
from control_plane.sidecar.process import EnvoyStartError
from control_plane.sidecar.supervisor import EnvoySupervisor
from tests.support.ports import free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.envoy

NODE_ID = "sidecar-e2e"
REPO_ROOT = Path(__file__).resolve().parents[2]


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _bootstrap(xds_port: int, admin_port: int = 0) -> str:
    return render_bootstrap(NODE_ID, "e2e", "127.0.0.1", xds_port, admin_port=admin_port)


def _supervisor(data_dir: Path, xds_port: int, admin_port: int = 0) -> EnvoySupervisor:
    bootstrap = _bootstrap(xds_port, admin_port)
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
    # Hot restart would tie Envoy's life to the control plane's (PR_SET_PDEATHSIG).
    assert info.raw["command_line_options"]["disable_hot_restart"] is True

    assert "server.live" in stats
    assert "cluster_manager.active_clusters" in stats

    (host,) = clusters["xds_cluster"].hosts
    assert host.address == f"127.0.0.1:{xds_port}"
    assert not clusters["xds_cluster"].added_via_api
    assert {t.priority for t in clusters["xds_cluster"].circuit_breakers} == {"DEFAULT", "HIGH"}

    assert "envoy_server_live" in prometheus
    # With ?resource= Envoy lists the matching entries themselves under "configs".
    names = [c["cluster"]["name"] for c in static["configs"]]
    # xDS, and the fleet (the local cluster a scope: fleet rate limit divides by).
    assert names == ["integration_fleet", "xds_cluster"]


async def test_ready_goes_live_without_control_plane(envoy: EnvoySupervisor) -> None:
    # A pod must become ready even when the control plane is not up yet. Envoy waits for
    # the fleet's EDS (2 s), then CDS, then LDS, each up to its initial_fetch_timeout (10 s in
    # envoy/bootstrap.yaml): LIVE comes after about 22 s.
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

    os.kill(old_pid, signal.SIGKILL)
    async with asyncio.timeout(30):
        await restarted.wait()

    assert envoy.restarts == 1
    assert envoy.running
    assert envoy.pid not in (None, old_pid)
    assert not _process_exists(old_pid)
    assert envoy.admin_url is not None
    async with EnvoyAdmin(envoy.admin_url) as admin:
        assert (await admin.server_info()).node_id == NODE_ID


async def test_stop_leaves_no_process(tmp_path: Path, xds_port: int) -> None:
    supervisor = _supervisor(tmp_path / "envoy", xds_port)
    await supervisor.start()
    try:
        pid = supervisor.pid
        assert pid is not None
    finally:
        await supervisor.stop()
    assert not supervisor.running
    assert supervisor.pid is None and supervisor.admin_url is None
    assert not _process_exists(pid)
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
        assert first.pid != second.pid


async def test_bad_bootstrap_fails_start_and_leaves_no_process(tmp_path: Path) -> None:
    supervisor = EnvoySupervisor("static_resources: {clusters: [{}]}\n", tmp_path / "bad")
    with pytest.raises(EnvoyStartError, match="exited"):
        await supervisor.start()
    assert not supervisor.running
    await supervisor.stop()


# -- adoption of the Envoy a crashed control plane left behind ------------------------------

#: Supervisor A: starts Envoy, reports it on stdout, then idles until SIGKILLed.
_CONTROL_PLANE = """
import asyncio, json, sys
from pathlib import Path
from control_plane.sidecar.supervisor import EnvoySupervisor

async def main() -> None:
    data_dir, bootstrap_file = Path(sys.argv[1]), Path(sys.argv[2])
    supervisor = EnvoySupervisor(bootstrap_file.read_text(encoding="utf-8"), data_dir)
    await supervisor.start()
    state = {"pid": supervisor.pid, "admin_url": supervisor.admin_url}
    print(json.dumps(state), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def _live(pid: int) -> bool:
    """Alive and not a zombie (orphans are re-parented to an init that may never reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZXx"


def _envoys_on(supervisor: EnvoySupervisor) -> list[int]:
    """Pids of the live processes whose command line names this data dir's bootstrap."""
    needle = str(supervisor.bootstrap_path).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "cmdline").read_bytes().split(b"\0") and _live(int(entry.name)):
                pids.append(int(entry.name))
    return pids


def _kill_envoys_on(supervisor: EnvoySupervisor) -> None:
    for pid in _envoys_on(supervisor):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _write_control_plane_bootstrap(data_dir: Path, bootstrap: str) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    bootstrap_file = data_dir.parent / f"{data_dir.name}-bootstrap.yaml"
    bootstrap_file.write_text(bootstrap, encoding="utf-8")
    return bootstrap_file


def _write_foreign_pid_file(supervisor: EnvoySupervisor) -> None:
    """A pid file naming this test process, with its real start time and the right hash."""
    stat = Path("/proc/self/stat").read_text(encoding="utf-8")
    start_time = stat.rsplit(")", 1)[1].split()[19]
    bootstrap_sha256 = hashlib.sha256(supervisor.bootstrap.encode()).hexdigest()
    supervisor.data_dir.mkdir(parents=True, exist_ok=True)
    supervisor.pid_path.write_text(f"{os.getpid()}\n{start_time}\n{bootstrap_sha256}\n")


async def _crashed_control_plane(data_dir: Path, bootstrap: str) -> dict[str, Any]:
    """Run supervisor A in a child Python process and SIGKILL that process once Envoy is up.

    Returns what A reported (``pid``, ``admin_url``); A's Envoy is left running, orphaned.
    """
    bootstrap_file = _write_control_plane_bootstrap(data_dir, bootstrap)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CONTROL_PLANE,
        str(data_dir),
        str(bootstrap_file),
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
    )
    try:
        assert child.stdout is not None
        async with asyncio.timeout(30):
            line = await child.stdout.readline()
        state: dict[str, Any] = json.loads(line)
    finally:
        child.kill()  # the crash: no stop(), no cleanup
        await child.wait()
    # Envoy outlives its control plane and keeps serving (a hot-restart-enabled Envoy got
    # SIGTERM from the kernel here: PR_SET_PDEATHSIG).
    await asyncio.sleep(1.0)
    assert _live(state["pid"]), "Envoy must outlive its control plane"
    async with EnvoyAdmin(state["admin_url"], timeout=2.0) as admin:
        assert (await admin.server_info()).node_id == NODE_ID
    return state


async def test_restarted_control_plane_adopts_envoy(tmp_path: Path, xds_port: int) -> None:
    # A fixed admin port, as in production: a second Envoy could not even bind it.
    admin_port = free_port()
    data_dir = tmp_path / "envoy"
    supervisor = _supervisor(data_dir, xds_port, admin_port=admin_port)
    try:
        before = await _crashed_control_plane(data_dir, _bootstrap(xds_port, admin_port))
        restarted = asyncio.Event()
        supervisor.on_restart.append(lambda s: restarted.set())

        await supervisor.start()

        assert supervisor.adopted
        assert supervisor.running
        assert supervisor.pid == before["pid"]
        assert supervisor.admin_url == before["admin_url"] == f"http://127.0.0.1:{admin_port}"
        assert _envoys_on(supervisor) == [before["pid"]]
        async with supervisor.admin() as admin:
            assert (await admin.server_info()).node_id == NODE_ID

        # The adopted Envoy dies: it is respawned as if it had been our child.
        os.kill(before["pid"], signal.SIGKILL)
        async with asyncio.timeout(30):
            await restarted.wait()

        assert supervisor.restarts == 1
        assert not supervisor.adopted
        assert supervisor.running
        new_pid = supervisor.pid
        assert new_pid not in (None, before["pid"])
        assert not _live(before["pid"])
        assert _envoys_on(supervisor) == [new_pid]
        assert supervisor.pid_path.read_text(encoding="utf-8").split()[0] == str(new_pid)
        async with supervisor.admin() as admin:
            assert (await admin.server_info()).node_id == NODE_ID

        await supervisor.stop()
        assert not supervisor.running and supervisor.pid is None
        assert _envoys_on(supervisor) == []
        assert not supervisor.pid_path.exists()
    finally:
        await supervisor.stop()
        _kill_envoys_on(supervisor)


async def test_stop_stops_an_adopted_envoy(tmp_path: Path, xds_port: int) -> None:
    data_dir = tmp_path / "envoy"
    supervisor = _supervisor(data_dir, xds_port)
    try:
        before = await _crashed_control_plane(data_dir, _bootstrap(xds_port))
        await supervisor.start()
        assert supervisor.adopted and supervisor.pid == before["pid"]

        await supervisor.stop()

        assert not supervisor.running and not supervisor.adopted
        assert supervisor.pid is None and supervisor.admin_url is None
        assert not _live(before["pid"])
        assert _envoys_on(supervisor) == []
        assert not supervisor.pid_path.exists()
        assert supervisor.restarts == 0
        # Drained and SIGTERMed, not killed: Envoy logged its clean shutdown.
        assert "exiting" in supervisor.log_path.read_text(encoding="utf-8")
    finally:
        await supervisor.stop()
        _kill_envoys_on(supervisor)


async def test_changed_bootstrap_replaces_envoy(tmp_path: Path, xds_port: int) -> None:
    data_dir = tmp_path / "envoy"
    new_xds_port = free_port()
    supervisor = _supervisor(data_dir, new_xds_port)
    try:
        before = await _crashed_control_plane(data_dir, _bootstrap(xds_port))

        await supervisor.start()

        assert not supervisor.adopted
        assert supervisor.pid not in (None, before["pid"])
        assert not _live(before["pid"])
        assert _envoys_on(supervisor) == [supervisor.pid]
        async with supervisor.admin() as admin:
            (host,) = (await admin.clusters())["xds_cluster"].hosts
        assert host.address == f"127.0.0.1:{new_xds_port}"
    finally:
        await supervisor.stop()
        _kill_envoys_on(supervisor)
    assert _envoys_on(supervisor) == []


async def test_stale_pid_file_is_ignored(tmp_path: Path, xds_port: int) -> None:
    supervisor = _supervisor(tmp_path / "envoy", xds_port)
    # A live process with its real start time and the right hash, but not our Envoy (this
    # test process): it must be neither adopted nor signalled.
    _write_foreign_pid_file(supervisor)
    try:
        await supervisor.start()
        assert not supervisor.adopted
        assert supervisor.pid not in (None, os.getpid())
        assert supervisor.pid_path.read_text().split()[0] == str(supervisor.pid)
    finally:
        await supervisor.stop()

    supervisor.pid_path.write_text("not a pid file\n")
    try:
        await supervisor.start()
        assert not supervisor.adopted and supervisor.running
    finally:
        await supervisor.stop()


async def test_second_supervisor_on_one_data_dir_is_refused(tmp_path: Path, xds_port: int) -> None:
    first = _supervisor(tmp_path / "envoy", xds_port)
    second = _supervisor(tmp_path / "envoy", xds_port)
    async with first:
        with pytest.raises(RuntimeError, match="another Envoy supervisor"):
            await second.start()
        assert first.running
        assert _envoys_on(first) == [first.pid]
    # The lock went with first.stop(): the data dir is free again.
    async with second:
        assert second.running and not second.adopted
