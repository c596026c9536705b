"""Certificates and clients for the shared topology's tests (trustme CAs, loopback only).

trustme issues DNS/IP/e-mail SANs; a workload's SPIFFE ID is a URI SAN, so client
certificates are signed here with ``cryptography`` by the trustme CA's own key.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import trustme
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

__all__ = ["ClientCert", "FleetPki", "delta_request", "open_delta", "write_workloads"]


@dataclass(frozen=True, slots=True)
class ClientCert:
    cert: Path
    key: Path

    def pem(self) -> tuple[bytes, bytes]:
        return self.cert.read_bytes(), self.key.read_bytes()


def _sign(ca: trustme.CA, sans: list[x509.GeneralName], common_name: str) -> tuple[bytes, bytes]:
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


class FleetPki:
    """A CA, the xDS server's certificate (localhost, 127.0.0.1) and client certificates."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.ca = trustme.CA()
        self.ca_file = root / "ca.crt"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        server = self.ca.issue_cert("localhost", "127.0.0.1")
        self.server_cert, self.server_key = root / "tls.crt", root / "tls.key"
        server.cert_chain_pems[0].write_to_path(str(self.server_cert))
        server.private_key_pem.write_to_path(str(self.server_key))

    def client(self, name: str, *, uri: str | None = None, dns: str | None = None) -> ClientCert:
        """A client certificate with a URI SAN and/or a DNS SAN, signed by this CA."""
        sans: list[x509.GeneralName] = []
        if uri:
            sans.append(x509.UniformResourceIdentifier(uri))
        if dns:
            sans.append(x509.DNSName(dns))
        return self._write(name, _sign(self.ca, sans, name))

    def foreign_client(self, name: str, uri: str) -> ClientCert:
        """A client certificate for ``uri`` from another CA (the server must refuse it)."""
        other = trustme.CA()
        return self._write(name, _sign(other, [x509.UniformResourceIdentifier(uri)], name))

    def _write(self, name: str, pems: tuple[bytes, bytes]) -> ClientCert:
        out = ClientCert(self.root / f"{name}.crt", self.root / f"{name}.key")
        out.cert.write_bytes(pems[0])
        out.key.write_bytes(pems[1])
        out.key.chmod(0o600)
        return out

    def settings_env(self) -> dict[str, str]:
        return {
            "INTEGRATION_SERVICE_TOPOLOGY": "shared",
            "INTEGRATION_SERVICE_XDS_TLS_CERT": str(self.server_cert),
            "INTEGRATION_SERVICE_XDS_TLS_KEY": str(self.server_key),
            "INTEGRATION_SERVICE_XDS_CLIENT_CA": str(self.ca_file),
        }


def write_workloads(path: Path, workloads: dict[str, tuple[str, list[str]]]) -> Path:
    """``{name: (tenant, [identities])}`` as a workloads file."""
    doc = {
        "workloads": [
            {"name": name, "tenant": tenant, "identities": identities}
            for name, (tenant, identities) in workloads.items()
        ]
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def open_delta(port: int, pki: FleetPki, client: ClientCert | None) -> tuple[grpc.aio.Channel, Any]:
    """A TLS channel to the gate (with ``client``'s certificate, or none) and its stub."""
    cert, key = client.pem() if client is not None else (None, None)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca_file.read_bytes(), private_key=key, certificate_chain=cert
    )
    channel = grpc.aio.secure_channel(
        f"127.0.0.1:{port}", credentials, options=[("grpc.ssl_target_name_override", "localhost")]
    )
    return channel, ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)


def delta_request(type_url: str, node_id: str = "", nonce: str = "", **fields: Any) -> Any:
    request = discovery_pb2.DeltaDiscoveryRequest(type_url=type_url, response_nonce=nonce, **fields)
    if node_id:
        request.node.id = node_id
    return request


class DeltaNode:
    """One simulated Envoy on a delta ADS stream: subscribe, read, ACK; keeps resources."""

    def __init__(self, stub: Any, node_id: str) -> None:
        import asyncio

        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._call = stub.DeltaAggregatedResources(self._requests())
        self.node_id = node_id
        self.resources: dict[str, dict[str, str]] = {}  # type_url -> name -> version
        self._first = True

    async def _requests(self) -> Any:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            yield item

    def subscribe(self, type_url: str, names: list[str] | None = None) -> None:
        request = delta_request(type_url, self.node_id if self._first else "")
        self._first = False
        if names:
            request.resource_names_subscribe.extend(names)
        self._queue.put_nowait(request)

    async def receive(self, wait_s: float = 10.0) -> Any:
        """The next response, ACKed at once."""
        import asyncio

        response = await asyncio.wait_for(self._call.read(), wait_s)
        if response is grpc.aio.EOF:  # type: ignore[attr-defined]
            raise ConnectionError("stream ended")
        held = self.resources.setdefault(response.type_url, {})
        for resource in response.resources:
            held[resource.name] = resource.version
        for name in response.removed_resources:
            held.pop(name, None)
        self._queue.put_nowait(delta_request(response.type_url, nonce=response.nonce))
        return response

    async def close(self) -> None:
        self._queue.put_nowait(None)
        self._call.cancel()
