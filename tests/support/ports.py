"""Free TCP ports on loopback for tests."""

from __future__ import annotations

import socket

__all__ = ["free_port"]

# Ports this test process has handed out. The kernel may give a just-closed ephemeral port
# again at once, so two calls in a row (a registry with several listeners) could name the
# same port; a port is handed out once per process.
_issued: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on *host* a moment ago, never the same twice in
    this process.

    The kernel picks it (bind to port 0). Another process may take it before the caller
    binds it, so prefer letting the server under test bind port 0 itself when it can.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        if port not in _issued:
            _issued.add(port)
            return port
    raise RuntimeError("the kernel kept handing out ports this test process already uses")
