"""Control-plane replicas on shared services, each with its own Envoy beside it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from control_plane.sidecar.supervisor import EnvoySupervisor
from tests.support.envoy import running_envoy
from tests.support.ports import free_port
from tests.support.service import ServiceProcess

__all__ = ["running_replicas"]


@asynccontextmanager
async def running_replicas(
    workdir: Path,
    env: Mapping[str, str],
    names: Sequence[str] = ("a", "b"),
    registry_yaml: str = "integrations: []\n",
) -> AsyncIterator[list[tuple[ServiceProcess, EnvoySupervisor]]]:
    """One (control plane, Envoy) pair per name, started (not yet waited for); all stopped
    on exit. ``env`` names the shared services (``POSTGRESQL_URL``, ``REDIS_URL``)."""
    async with AsyncExitStack() as stack:
        replicas: list[tuple[ServiceProcess, EnvoySupervisor]] = []
        for name in names:
            xds_port = free_port()
            envoy = await stack.enter_async_context(
                running_envoy(
                    workdir / f"envoy-{name}", node_id="e2e-node", xds_port=xds_port, delta=True
                )
            )
            assert envoy.admin_url is not None
            service = ServiceProcess(
                workdir / f"cp-{name}",
                registry_yaml,
                env=env,
                xds_port=xds_port,
                envoy_admin_port=int(envoy.admin_url.rsplit(":", 1)[1]),
            )
            service.start()
            stack.callback(service.stop)
            replicas.append((service, envoy))
        yield replicas
