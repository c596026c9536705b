"""A ``redis-server`` that a test can stop and start again on the same port (outages)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.ports import free_port
from tests.support.processes import stop_process, wait_listening

__all__ = ["RedisServer"]


class RedisServer:
    """One private redis-server without persistence; ``stop()``/``start()`` repeatable."""

    def __init__(self, base_dir: Path | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed")
        self.binary = binary
        self.workdir = Path(tempfile.mkdtemp(prefix="redis-", dir=base_dir))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        log = self.workdir / "redis.log"
        with log.open("ab") as out:
            self.process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        wait_listening(self.process, self.port, log, "redis-server")

    def stop(self) -> None:
        process, self.process = self.process, None
        stop_process(process)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
