"""The shared topology's runtime: the workloads in force and the TLS-gated xDS server.

:class:`Fleet` is what the wiring (``control_plane.app.fleet``) starts and what the API
reads: the workloads file, the workloads derived from SPIFFE IDs that have connected, the
gate (refusal counts, live connections) and the plaintext ADS server behind it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc

from control_plane.registry.workloads import Workload, WorkloadBook, WorkloadsFile
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.gate import Peer, TlsFiles, TlsGate
from control_plane.xds.server import serve, stop_server

__all__ = ["Fleet"]

log = logging.getLogger(__name__)


class Fleet:
    """Workloads, and the gate in front of the ADS server (after :meth:`start`)."""

    def __init__(
        self, workloads_file: WorkloadsFile, files: TlsFiles, *, max_connections: int = 20_000
    ) -> None:
        self.file = workloads_file
        self.files = files
        self.max_connections = max_connections
        self.gate: TlsGate | None = None
        self.port: int | None = None
        # Workloads derived from a SPIFFE ID (``derive_from_spiffe``) seen on a connection.
        self._derived: dict[str, Workload] = {}
        self._server: grpc.aio.Server | None = None
        self.on_new_workload: Callable[[], object] = lambda: None

    @property
    def book(self) -> WorkloadBook:
        return self.file.book

    def workloads(self) -> list[Workload]:
        """Every workload a snapshot is cut for: declared ones and derived ones seen."""
        declared = dict(self.book.workloads)
        for name, workload in self._derived.items():
            declared.setdefault(name, workload)
        return [declared[name] for name in sorted(declared)]

    def identify(self, grpc_peer: str) -> tuple[Peer | None, Workload | None]:
        """The :class:`~control_plane.xds.server.Authenticator` the ADS server asks."""
        assert self.gate is not None
        peer, workload = self.gate.identify(grpc_peer)
        if workload is not None and workload.derived and workload.name not in self._derived:
            self._derived[workload.name] = workload
            log.info("derived workload connected", extra={"workload": workload.name})
            self.on_new_workload()  # the pipeline cuts its snapshot before the node waits
        return peer, workload

    def refuse(self, reason: str, address: str, **detail: object) -> None:
        assert self.gate is not None
        self.gate.refuse(reason, address, **detail)

    def reload(self) -> bool:
        """Re-read the workloads file; connections it no longer vouches for are closed."""
        if not self.file.reload():
            return False
        if self.gate is not None:
            self.gate.revalidate()
        return True

    async def start(self, cache: SnapshotCache, host: str, port: int) -> int:
        """Start the ADS server on a loopback port and the gate on ``host:port``."""
        self._server, backend = await serve(cache, "127.0.0.1", 0, authenticator=self)
        self.gate = TlsGate(
            self.files, lambda: self.file.book, backend, max_connections=self.max_connections
        )
        self.port = await self.gate.start(host, port)
        return self.port

    async def stop(self) -> None:
        if self.gate is not None:
            await self.gate.stop()
        if self._server is not None:
            await stop_server(self._server)
