"""Child server processes of the test support: wait until one listens, stop one."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

__all__ = ["stop_process", "wait_listening"]


def wait_listening(
    process: subprocess.Popen[bytes], port: int, log: Path, name: str, deadline_s: float = 10.0
) -> None:
    """Return once ``process`` accepts TCP connections on loopback ``port``; raise with its
    log if it exits or the deadline passes first."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start:\n{log.read_text()}") from None
            time.sleep(0.05)


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL after 10 s; nothing for a process that has already ended."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
