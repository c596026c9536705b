"""A real envoyproxy/ratelimit (built by ``scripts/ratelimit-service``) for e2e tests.

Configured the way docs/deployment.md deploys it: Redis over TCP, no statsd, the file
provider watching ``<runtime_root>/ratelimit/config`` (``RUNTIME_WATCH_ROOT=false``, dot files
ignored), which is the control plane's ``ratelimit_config_dir``. ``stop()``/``start()`` are
repeatable on the same ports (outage tests).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from tests.support.ports import free_port
from tests.support.processes import stop_process, wait_listening

__all__ = ["RateLimitService", "ratelimit_binary"]

REPO = Path(__file__).resolve().parents[2]


def ratelimit_binary() -> str:
    """The cached binary (built on first use; ``make test`` builds it ahead)."""
    done = subprocess.run(
        [str(REPO / "scripts" / "ratelimit-service")], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise FileNotFoundError(f"envoyproxy/ratelimit could not be built:\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


class RateLimitService:
    def __init__(self, redis_url: str, base_dir: Path | None = None) -> None:
        self.binary = ratelimit_binary()
        self.workdir = Path(tempfile.mkdtemp(prefix="ratelimit-", dir=base_dir))
        self.config_dir = self.workdir / "runtime" / "ratelimit" / "config"
        self.config_dir.mkdir(parents=True)
        parsed = urlparse(redis_url)
        self.redis = f"{parsed.hostname}:{parsed.port}"
        self.port, self.grpc_port, self.debug_port = free_port(), free_port(), free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """What the control plane's ``ratelimit_address`` names."""
        return f"127.0.0.1:{self.grpc_port}"

    def environment(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", ""),
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "GRPC_HOST": "127.0.0.1",
            "GRPC_PORT": str(self.grpc_port),
            "DEBUG_HOST": "127.0.0.1",
            "DEBUG_PORT": str(self.debug_port),
            "LOG_LEVEL": "info",
            "LOG_FORMAT": "json",
            "USE_STATSD": "false",
            "REDIS_SOCKET_TYPE": "tcp",
            "REDIS_URL": self.redis,
            "RUNTIME_ROOT": str(self.workdir / "runtime"),
            "RUNTIME_SUBDIRECTORY": "ratelimit",
            "RUNTIME_WATCH_ROOT": "false",
            "RUNTIME_IGNOREDOTFILES": "true",
            # A request refused by one descriptor does not spend the others' quota.
            "STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT": "true",
        }

    def start(self) -> None:
        log = self.workdir / "ratelimit.log"
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [self.binary], env=self.environment(), stdout=out, stderr=subprocess.STDOUT
            )
        wait_listening(self.process, self.grpc_port, log, "ratelimit", deadline_s=20)

    def stop(self) -> None:
        process, self.process = self.process, None
        stop_process(process)

    def debug(self, path: str) -> str:
        """A page of the debug port (``/rlconfig``: the loaded config; ``/stats``)."""
        url = f"http://127.0.0.1:{self.debug_port}{path}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode("utf-8"))

    def log(self) -> str:
        path = self.workdir / "ratelimit.log"
        return path.read_text(errors="replace") if path.exists() else ""
