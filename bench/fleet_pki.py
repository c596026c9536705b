"""Certificates, the workloads file and the real Envoys' bootstrap of the fleet benchmark.

The CA, the xDS server's certificate (``localhost``, ``127.0.0.1``) and the workloads'
client certificates (a SPIFFE URI SAN each, which trustme cannot issue) come from the
shared-topology tests' :class:`tests.support.fleet.FleetPki`. Workload ``w{k}`` belongs to
tenant ``t{k // 2}`` and is the identity ``spiffe://bench.local/ns/t{k // 2}/sa/w{k}``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from control_plane.sidecar.bootstrap import shared_bootstrap
from tests.support import fleet as test_fleet

__all__ = ["SERVER_NAME", "FleetPki", "Workload", "tls_bootstrap", "workloads"]

TRUST_DOMAIN = "bench.local"
SERVER_NAME = "localhost"


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    tenant: str

    @property
    def identity(self) -> str:
        return f"spiffe://{TRUST_DOMAIN}/ns/{self.tenant}/sa/{self.name}"


def workloads(count: int) -> list[Workload]:
    return [Workload(f"w{k}", f"t{k // 2}") for k in range(count)]


class FleetPki:
    """Everything on disk under ``root``: ``ca.crt``, the server's ``tls.{crt,key}``,
    ``w{k}.{crt,key}`` per workload (the layout ``bench.fleet_clients --certs-dir`` reads)
    and ``workloads.yaml``."""

    def __init__(self, root: Path, fleet: list[Workload]) -> None:
        self.root, self.fleet = root, fleet
        self.pki = test_fleet.FleetPki(root)
        self.ca_file = self.pki.ca_file
        for workload in fleet:
            self.pki.client(workload.name, uri=workload.identity)
        self.workloads_file = test_fleet.write_workloads(
            root / "workloads.yaml", {w.name: (w.tenant, [w.identity]) for w in fleet}
        )

    def env(self) -> dict[str, str]:
        """The control plane's settings for the shared topology (``control_plane.settings``)."""
        return {
            **self.pki.settings_env(),
            "INTEGRATION_SERVICE_WORKLOADS_FILE": str(self.workloads_file),
        }

    def client_files(self, workload: str) -> tuple[Path, Path]:
        return self.root / f"{workload}.crt", self.root / f"{workload}.key"


def tls_bootstrap(pki: FleetPki, workload: str, node_id: str, xds_port: int, workdir: Path) -> str:
    """The bootstrap an application pod's Envoy runs in the shared topology
    (:func:`control_plane.sidecar.bootstrap.shared_bootstrap`, what ``render --format
    bootstrap --topology shared`` prints): delta ADS to ``127.0.0.1:xds_port`` over TLS,
    with the workload's certificate laid out like cert-manager's Secret (``tls.crt``,
    ``tls.key``, ``ca.crt`` under ``workdir/tls``) and read through file-based SDS."""
    tls_dir, sds_dir = workdir / "tls", workdir / "sds"
    tls_dir.mkdir(parents=True, exist_ok=True)
    sds_dir.mkdir(parents=True, exist_ok=True)
    cert, key = pki.client_files(workload)
    shutil.copyfile(cert, tls_dir / "tls.crt")
    shutil.copyfile(key, tls_dir / "tls.key")
    shutil.copyfile(pki.ca_file, tls_dir / "ca.crt")
    files = shared_bootstrap(
        node_id=node_id,
        node_cluster="fleet",
        xds_addresses=[("127.0.0.1", xds_port)],
        tls_dir=tls_dir,
        sds_dir=sds_dir,
        server_name=SERVER_NAME,
        admin_port=0,
        delta=True,
    )
    for name, text in files.items():
        if name != "bootstrap.yaml":
            (sds_dir / name).write_text(text, encoding="utf-8")
    return files["bootstrap.yaml"]
