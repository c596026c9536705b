"""A loopback DNS server speaking the real protocol (dnslib), with answers a test controls.

``running_dns()`` serves UDP and TCP on 127.0.0.1 at one free port, in background threads
(dnslib's ``DNSServer``), so a control plane in this process or in a subprocess asks it
exactly as it would ask a real server (``dns_servers: 127.0.0.1:<port>``). A test sets
what each name answers with :meth:`FakeDns.set` (A/AAAA records and their TTL, or an
rcode such as NXDOMAIN/SERVFAIL) and reads which names were asked, and how often.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from dnslib import AAAA, QTYPE, RCODE, RR, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer

__all__ = ["FakeDns", "running_dns"]


@dataclass
class _Entry:
    addresses: tuple[str, ...] = ()
    ttl: int = 60
    rcode: str | None = None  # "NXDOMAIN", "SERVFAIL", ...: answer that instead


@dataclass
class FakeDns:
    """What the server answers; thread-safe (the server threads read it)."""

    port: int = 0
    entries: dict[str, _Entry] = field(default_factory=dict)
    queries: Counter[tuple[str, str]] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def server(self) -> str:
        """The ``dns_servers`` value naming this server."""
        return f"127.0.0.1:{self.port}"

    def set(
        self, name: str, addresses: Sequence[str] = (), *, ttl: int = 60, rcode: str | None = None
    ) -> None:
        """``name`` answers ``addresses`` (A and AAAA by family) with ``ttl``, or ``rcode``."""
        with self._lock:
            self.entries[name.rstrip(".").lower()] = _Entry(tuple(addresses), ttl, rcode)

    def asked(self, name: str, qtype: str = "A") -> int:
        with self._lock:
            return self.queries[(name.rstrip(".").lower(), qtype)]

    def answer(self, name: str, qtype: str) -> tuple[_Entry | None, list[Any]]:
        key = name.rstrip(".").lower()
        with self._lock:
            self.queries[(key, qtype)] += 1
            entry = self.entries.get(key)
        if entry is None or entry.rcode is not None:
            return entry, []
        records = []
        for address in entry.addresses:
            version = ipaddress.ip_address(address).version
            if qtype == "A" and version == 4:
                records.append(RR(name, QTYPE.A, rdata=A(address), ttl=entry.ttl))
            elif qtype == "AAAA" and version == 6:
                records.append(RR(name, QTYPE.AAAA, rdata=AAAA(address), ttl=entry.ttl))
        return entry, records


class _Resolver(BaseResolver):  # type: ignore[misc]  # dnslib ships no type information
    def __init__(self, state: FakeDns) -> None:
        self.state = state

    def resolve(self, request: Any, handler: Any) -> Any:
        reply = request.reply()
        qname = str(request.q.qname)
        entry, records = self.state.answer(qname, QTYPE[request.q.qtype])
        if entry is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif entry.rcode is not None:
            reply.header.rcode = getattr(RCODE, entry.rcode)
        for record in records:
            reply.add_answer(record)
        return reply  # no records and NOERROR: the name exists without that type


def _free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 a moment ago."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port: int = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no port free for both UDP and TCP")


@contextmanager
def running_dns() -> Iterator[FakeDns]:
    state = FakeDns(port=_free_port())
    resolver = _Resolver(state)
    quiet = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
    servers = [
        DNSServer(resolver, address="127.0.0.1", port=state.port, logger=quiet, tcp=tcp)
        for tcp in (False, True)
    ]
    threads = [
        # A short poll interval: shutdown() waits for the loop to notice (0.5 s by default).
        threading.Thread(
            target=server.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        for server in servers
    ]
    for thread in threads:
        thread.start()
    try:
        yield state
    finally:
        for server, thread in zip(servers, threads, strict=True):
            server.server.shutdown()
            server.server.server_close()
            thread.join(timeout=5)
