"""``xds_port: 0`` across restarts: re-bind the previous run's port, so Envoy can be adopted.

The bootstrap Envoy runs with names the xDS server's port, and the supervisor adopts the
Envoy a crashed control plane left only if that bootstrap is unchanged (:mod:`.adoption`).
A fixed port gives that for free. With port 0 the kernel picks a port, and a restarted run
would get another one, render another bootstrap and replace the running Envoy: listeners
gone until the new Envoy has its config (measured: 37 of 9,002 requests failed).

So with port 0 the port chosen is written to ``<data_dir>/xds-port``, and the next run
binds that port again when it is free: the same bootstrap, the Envoy is adopted. When it is
taken (another process got it meanwhile) the run falls back to a new free port and the
running Envoy, if any, is replaced as before. The log says which happened. A fixed
``xds_port`` ignores the file.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

__all__ = ["PORT_FILE", "bind_xds"]

logger = logging.getLogger(__name__)

#: In the data directory: the xDS port the last run bound while ``xds_port`` was 0.
PORT_FILE = "xds-port"

S = TypeVar("S")


def _remembered(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and 0 < int(text) <= 65535 else None


def _remember(path: Path, port: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{port}\n", encoding="ascii")
    tmp.replace(path)  # atomic: a crash never leaves half a port


def _free(host: str, port: int) -> bool:
    """True when nothing listens on ``host:port``. Probed without ``SO_REUSEPORT``, which
    gRPC sets: a live server holding the port (with it or not) makes this bind fail, where
    gRPC's own bind would share the port with it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As gRPC does: the previous run's connections in TIME_WAIT do not hold the port.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


async def bind_xds(
    configured: int, data_dir: Path, host: str, serve: Callable[[int], Awaitable[tuple[S, int]]]
) -> tuple[S, int]:
    """``serve(port)`` on the configured xDS port or, when it is 0, on the previous run's port
    if free, else on a new one (remembered for the next run); returns what ``serve`` does:
    the server and the port bound. ``serve`` raises ``RuntimeError`` when it cannot bind.
    """
    if configured:
        return await serve(configured)
    path = data_dir / PORT_FILE
    previous = _remembered(path)
    if previous is not None and _free(host, previous):
        try:
            served = await serve(previous)
        except RuntimeError:
            pass  # taken between the probe and the bind
        else:
            logger.info(
                "xds_port 0: re-bound the previous run's xDS port, so an Envoy it left "
                "running can be adopted",
                extra={"port": served[1], "file": str(path)},
            )
            return served
    served = await serve(0)
    if previous is None:
        logger.info("xds_port 0: new xDS port", extra={"port": served[1], "file": str(path)})
    else:
        logger.warning(
            "xds_port 0: the previous run's xDS port is taken; bound a new one, so an Envoy "
            "the previous run left running is replaced, not adopted",
            extra={"port": served[1], "previous_port": previous, "file": str(path)},
        )
    try:
        _remember(path, served[1])
    except OSError as exc:
        logger.warning(
            "xds_port 0: could not remember the xDS port; a restart will bind another",
            extra={"file": str(path), "error": str(exc)},
        )
    return served
