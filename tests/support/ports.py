"""Free TCP ports on loopback for tests."""

from __future__ import annotations

import random
import socket

__all__ = ["free_port"]

# Ports this test process has handed out, so two calls in a row (a registry with several
# listeners) never name the same port.
_issued: set[int] = set()
# Handed out from below the kernel's ephemeral range (32768-60999 by default), as the
# benchmarks' ports are (bench/registry_docs.free_ports, 18000-32000). A port picked inside
# it (bind to port 0) could be taken, before the server under test binds it, as the source
# port of any outgoing connection on the machine: CI saw Envoy refuse a listener with
# "Address already in use" that way. Above 12000, clear of the listen ports the service
# assigns itself from 10000; below the benchmarks' ports.
_RANGE = (12_000, 17_999)


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on *host* a moment ago, never the same twice in
    this process, and never one the kernel hands out as a connection's source port.

    Another test process may still take it before the caller binds it, so prefer letting
    the server under test bind port 0 itself when it can.
    """
    for _ in range(1_000):
        port = random.randint(*_RANGE)
        if port not in _issued and _bindable(host, port):
            _issued.add(port)
            return port
    raise RuntimeError(f"no free port on {host} in {_RANGE[0]}-{_RANGE[1]}")
