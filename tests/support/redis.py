"""A throw-away ``redis-server`` (Debian package) on a free loopback port."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.ports import free_port
from tests.support.processes import stop_process, wait_listening

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
        wait_listening(process, port, workdir / "redis.log", "redis-server")
        yield port
    finally:
        stop_process(process)
        shutil.rmtree(workdir, ignore_errors=True)
