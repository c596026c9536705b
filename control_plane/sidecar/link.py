"""The control plane's handle on its Envoy: embedded (supervised child) or external.

With ``--no-envoy`` (Kubernetes), Envoy is another container of the same pod and its admin
API is on ``127.0.0.1:<envoy_admin_port>``; embedded, the supervisor knows the live
address (admin port 0 picks a free one).
"""

from __future__ import annotations

from dataclasses import dataclass

from control_plane.sidecar.admin import EnvoyAdmin, EnvoyAdminError
from control_plane.sidecar.supervisor import EnvoySupervisor

__all__ = ["SidecarLink"]


@dataclass(slots=True)
class SidecarLink:
    node_id: str
    admin_port: int
    supervisor: EnvoySupervisor | None = None
    xds_port: int | None = None

    @property
    def admin_url(self) -> str | None:
        if self.supervisor is not None:
            return self.supervisor.admin_url
        return f"http://127.0.0.1:{self.admin_port}" if self.admin_port else None

    def admin(self, timeout: float = 3.0) -> EnvoyAdmin:
        url = self.admin_url
        if url is None:
            raise EnvoyAdminError("Envoy is not running")
        return EnvoyAdmin(url, timeout=timeout)
