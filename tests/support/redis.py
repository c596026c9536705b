"""A throw-away ``redis-server`` (Debian package) on a free loopback port."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.ports import free_port

__all__ = ["RedisUnavailable", "running_redis"]


class RedisUnavailable(RuntimeError):
    """No redis-server binary on this machine."""


@contextmanager
def running_redis(*extra_args: str, base_dir: Path | None = None) -> Iterator[int]:
    """Start redis-server (no persistence) and yield its port; stopped and removed after."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisUnavailable("redis-server is not installed")
    workdir = Path(tempfile.mkdtemp(prefix="redis-", dir=base_dir))
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    args += ["no", "--dir", str(workdir), *extra_args]
    with (workdir / "redis.log").open("wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"redis-server did not start:\n{(workdir / 'redis.log').read_text()}"
                    ) from None
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)
