"""The TLS gate of the shared topology: xDS over TLS with a required client certificate.

The gate owns the public xDS port. It completes each TLS handshake itself (Python's
``ssl``, OpenSSL underneath), which is what lets every refusal -- no certificate, one from
another CA, a handshake that never ends, an identity no workload has -- be logged and
counted here: gRPC's own TLS refuses such peers inside its C core, unseen and uncounted.
An accepted connection is then relayed byte for byte to the ADS server, listening in
plaintext on a loopback port of this process only. The gate records which of its relay
sockets carries which peer, keyed by that socket's local port, before relaying a byte;
the ADS server looks the port of ``context.peer()`` up and serves the workload the
*certificate* names. A connection to the loopback port that did not come through the gate
has no record and is refused.

The certificate, key and client CA are files (a cert-manager Secret, a CSI volume); they
are re-read when they change, so a rotation needs no restart. A reload that fails (a half-
written file) keeps the previous files in force and says so in the log.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from control_plane.registry.workloads import Workload, WorkloadBook

__all__ = ["Peer", "TlsFiles", "TlsGate", "certificate_sans"]

log = logging.getLogger(__name__)

_CHUNK = 256 * 1024
_RELOAD_CHECK_S = 1.0
_CLOSE_GRACE_S = 2.0


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert: Path
    key: Path
    client_ca: Path

    def stamp(self) -> tuple[tuple[int, int, int], ...]:
        out = []
        for path in (self.cert, self.key, self.client_ca):
            st = os.stat(path)
            out.append((st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(out)

    def context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert, self.key)
        ctx.load_verify_locations(cafile=str(self.client_ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.set_alpn_protocols(["h2"])  # gRPC clients insist on it
        return ctx


@dataclass(frozen=True, slots=True)
class Peer:
    """One authenticated connection: who it is (the certificate) and where it came from."""

    address: str
    uris: tuple[str, ...]
    dns_names: tuple[str, ...]

    @property
    def identity(self) -> str:
        return self.uris[0] if self.uris else f"dns:{self.dns_names[0]}" if self.dns_names else ""


def certificate_sans(der: bytes) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The URI and DNS subject alternative names of a DER certificate."""
    # cryptography loads with the first client certificate, not with the module: only the
    # shared topology's gate reads certificates (issue 20).
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return (), ()
    uris = tuple(sans.get_values_for_type(x509.UniformResourceIdentifier))
    dns = tuple(n.lower() for n in sans.get_values_for_type(x509.DNSName))
    return uris, dns


def _reason(error: BaseException) -> str:
    text = str(error).upper()
    if isinstance(error, TimeoutError):
        return "handshake_timeout"
    if "PEER_DID_NOT_RETURN_A_CERTIFICATE" in text or "NO CERTIFICATE" in text:
        return "no_certificate"
    if "CERTIFICATE_VERIFY_FAILED" in text or "UNKNOWN_CA" in text or "BAD_CERTIFICATE" in text:
        return "bad_certificate"
    return "handshake_failed"


def _port_of(peer: str) -> int | None:
    # grpc's peer string: "ipv4:127.0.0.1:54321" / "ipv6:[::1]:54321"
    head, _, port = peer.rpartition(":")
    return int(port) if head and port.isdigit() else None


class TlsGate:
    """Terminates TLS for the ADS server on ``backend_port`` and vouches for each peer."""

    def __init__(
        self,
        files: TlsFiles,
        book: Callable[[], WorkloadBook],
        backend_port: int,
        *,
        handshake_timeout: float = 10.0,
        max_connections: int = 20_000,
    ) -> None:
        self.files = files
        self._book = book
        self._backend_port = backend_port
        self._handshake_timeout = handshake_timeout
        # Past this many connections (relayed or handshaking) new ones are refused before
        # their handshake: a flood cannot exhaust the process's file descriptors.
        self._max_connections = max_connections
        self.refusals: collections.Counter[str] = collections.Counter()
        self._relays: dict[int, tuple[Peer, asyncio.StreamWriter]] = {}
        self._context = files.context()  # an unreadable file stops the start
        self._stamp = files.stamp()
        self._checked = time.monotonic()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Accepted(self), host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for _, writer in list(self._relays.values()):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    def refuse(self, reason: str, address: str, **detail: object) -> None:
        """Count and log one refused peer (never more than names and reasons)."""
        self.refusals[reason] += 1
        log.warning("xDS connection refused", extra={"reason": reason, "peer": address, **detail})

    def identify(self, grpc_peer: str) -> tuple[Peer | None, Workload | None]:
        """The gate's peer behind an ADS stream's ``context.peer()``, and its workload in
        the book now in force (None, None: the stream did not come through the gate)."""
        port = _port_of(grpc_peer)
        relay = self._relays.get(port) if port is not None else None
        if relay is None:
            return None, None
        peer = relay[0]
        return peer, self._book().identify(peer.uris, peer.dns_names)

    def revalidate(self) -> int:
        """Close every connection whose certificate no longer maps to a workload it was
        serving under (the workloads file changed); returns how many were closed."""
        book = self._book()
        closed = 0
        for peer, writer in list(self._relays.values()):
            if book.identify(peer.uris, peer.dns_names) is None:
                self.refuse("identity_withdrawn", peer.address, identity=peer.identity)
                writer.transport.abort()
                closed += 1
        return closed

    def _current_context(self) -> ssl.SSLContext:
        now = time.monotonic()
        if now - self._checked < _RELOAD_CHECK_S:
            return self._context
        self._checked = now
        try:
            stamp = self.files.stamp()
            if stamp != self._stamp:
                self._context, self._stamp = self.files.context(), stamp
                log.info("xDS TLS files reloaded", extra={"cert": str(self.files.cert)})
        except (OSError, ssl.SSLError) as exc:
            log.error(
                "xDS TLS files unreadable; the previous ones stay in force",
                extra={"error": str(exc)},
            )
        return self._context

    def _accepted(self, transport: asyncio.Transport) -> None:
        if len(self._tasks) >= self._max_connections:
            name = transport.get_extra_info("peername")
            self.refuse("too_many_connections", str(name), limit=self._max_connections)
            transport.abort()
            return
        task = asyncio.ensure_future(self._serve(transport))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, transport: asyncio.Transport) -> None:
        name = transport.get_extra_info("peername")
        address = f"{name[0]}:{name[1]}" if isinstance(name, tuple) else str(name)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_CHUNK)
        protocol = asyncio.StreamReaderProtocol(reader)
        try:
            # The accepted socket was paused before it read a byte: the whole ClientHello
            # reaches OpenSSL (start_tls resumes reading).
            tls = await asyncio.wait_for(
                loop.start_tls(transport, protocol, self._current_context(), server_side=True),
                self._handshake_timeout,
            )
        except (ssl.SSLError, OSError, TimeoutError, ConnectionError) as exc:
            self.refuse(_reason(exc), address, error=type(exc).__name__)
            transport.abort()
            return
        except asyncio.CancelledError:  # the gate stops mid-handshake
            transport.abort()
            raise
        if tls is None:  # the peer went away during the handshake
            transport.abort()
            return
        protocol.connection_made(tls)
        writer = asyncio.StreamWriter(tls, protocol, reader, loop)
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        uris, dns_names = certificate_sans(der) if der else ((), ())
        # An identity no workload has is still relayed: the ADS server refuses its stream
        # with PERMISSION_DENIED and a reason Envoy logs, and counts it (unknown_identity).
        peer = Peer(address, uris, dns_names)
        try:
            up_reader, up_writer = await asyncio.open_connection(
                "127.0.0.1", self._backend_port, limit=_CHUNK
            )
        except OSError as exc:
            log.error("xDS backend unreachable", extra={"error": str(exc)})
            tls.abort()
            return
        except asyncio.CancelledError:
            tls.abort()
            raise
        local = int(up_writer.get_extra_info("sockname")[1])
        self._relays[local] = (peer, writer)
        log.info("xDS peer connected", extra={"peer": address, "identity": peer.identity})
        try:
            await _relay(reader, writer, up_reader, up_writer)
        finally:
            self._relays.pop(local, None)
            log.info("xDS peer disconnected", extra={"peer": address, "identity": peer.identity})


class _Accepted(asyncio.Protocol):
    """A fresh connection: reading paused at once, handed to the gate for the handshake."""

    def __init__(self, gate: TlsGate) -> None:
        self._gate = gate

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()
        self._gate._accepted(transport)


async def _relay(
    a_reader: asyncio.StreamReader,
    a_writer: asyncio.StreamWriter,
    b_reader: asyncio.StreamReader,
    b_writer: asyncio.StreamWriter,
) -> None:
    """Copy both ways until either side ends, then close both."""

    async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError, ssl.SSLError):
            while data := await source.read(_CHUNK):
                sink.write(data)
                await sink.drain()

    tasks = [
        asyncio.create_task(pipe(a_reader, b_writer)),
        asyncio.create_task(pipe(b_reader, a_writer)),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        loop = asyncio.get_running_loop()
        for writer in (a_writer, b_writer):
            # close() flushes what is buffered; a TLS close then waits for the peer's
            # close_notify, which a vanished peer never sends: abort after a grace period.
            writer.close()
            loop.call_later(_CLOSE_GRACE_S, writer.transport.abort)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
