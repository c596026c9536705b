"""Free TCP ports on loopback for tests."""

from __future__ import annotations

import socket

__all__ = ["free_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on *host* a moment ago.

    The kernel picks it (bind to port 0). Another process may take it before the caller
    binds it, so prefer letting the server under test bind port 0 itself when it can.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
