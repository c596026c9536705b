"""Certificates, the workloads file and the TLS Envoy bootstrap of the fleet benchmark.

The CA, the xDS server's certificate (``localhost``, ``127.0.0.1``) and the workloads'
client certificates (a SPIFFE URI SAN each, which trustme cannot issue) come from the
shared-topology tests' :class:`tests.support.fleet.FleetPki`. Workload ``w{k}`` belongs to
tenant ``t{k // 2}`` and is the identity ``spiffe://bench.local/ns/t{k // 2}/sa/w{k}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from control_plane.sidecar.bootstrap import render_bootstrap
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


def tls_bootstrap(pki: FleetPki, workload: str, node_id: str, xds_port: int) -> str:
    """The shared bootstrap (``envoy/bootstrap.yaml``, delta ADS) with ``xds_cluster``
    speaking TLS: the workload's client certificate, the server checked against the CA and
    its name. gRPC needs HTTP/2, which the template already configures; over TLS the server
    negotiates it by ALPN, so the client offers ``h2``."""
    doc = yaml.safe_load(render_bootstrap(node_id, "fleet", "127.0.0.1", xds_port, 0, delta=True))
    cert, key = pki.client_files(workload)
    tls = {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "sni": SERVER_NAME,
        "common_tls_context": {
            "alpn_protocols": ["h2"],
            "tls_certificates": [
                {
                    "certificate_chain": {"filename": str(cert)},
                    "private_key": {"filename": str(key)},
                }
            ],
            "validation_context": {
                "trusted_ca": {"filename": str(pki.ca_file)},
                "match_typed_subject_alt_names": [
                    {"san_type": "DNS", "matcher": {"exact": SERVER_NAME}}
                ],
            },
        },
    }
    for cluster in doc["static_resources"]["clusters"]:
        if cluster["name"] == "xds_cluster":
            cluster["transport_socket"] = {
                "name": "envoy.transport_sockets.tls",
                "typed_config": tls,
            }
    return str(yaml.safe_dump(doc, sort_keys=False))
