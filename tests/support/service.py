"""Run ``integration-service run`` as a real subprocess for e2e tests.

The control plane runs in its own process (so it can be SIGKILLed); by default with
``--no-envoy`` and an Envoy the test starts itself on the shared bootstrap — exactly the
Kubernetes layout, where Envoy is its own container — or embedded (``embedded=True``).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.ports import free_port

__all__ = ["E2E_GRANTS", "ServiceProcess"]

# The references end-to-end tests register through the API, granted for loopback upstreams.
E2E_GRANTS = json.dumps(
    {
        "grants": [
            {"ref": f"env:{name}", "tenants": ["*"], "hosts": ["127.0.0.1", "localhost"]}
            for name in (
                "E2E_STRIPE_KEY",
                "E2E_KEY",
                "E2E_CACHE_KEY",
                "E2E_EMAIL_KEY",
                "E2E_AUTH0_ID",
                "E2E_AUTH0_SECRET",
                "E2E_BAD",
                "E2E_BAD_REDIS_PASSWORD",
            )
        ]
    }
)


class ServiceProcess:
    def __init__(
        self,
        workdir: Path,
        integrations_yaml: str,
        *,
        env: Mapping[str, str] | None = None,
        delta: bool = True,
        embedded: bool = False,
        xds_port: int | None = None,
        envoy_admin_port: int = 0,
        auth: bool = False,
        grants: str = E2E_GRANTS,
    ) -> None:
        self.workdir = workdir
        # auth=False disables authentication explicitly (the service says so in a header);
        # auth=True configures a known global admin key, sent by ``admin_headers``.
        self.auth = auth
        self.admin_key = f"isk_e2eadmin_{secrets.token_urlsafe(32)}"
        self.admin_headers = {"Authorization": f"Bearer {self.admin_key}"} if auth else {}
        workdir.mkdir(parents=True, exist_ok=True)
        self.integrations_file = workdir / "integrations.yaml"
        self.integrations_file.write_text(integrations_yaml)
        self.rate_limits_file = workdir / "rate_limits.yaml"
        if not self.rate_limits_file.exists():
            self.rate_limits_file.write_text("rules: {}\n")
        self.grants_file = workdir / "grants.yaml"
        self.grants_file.write_text(grants)
        self.port = free_port()
        self.xds_port = xds_port or free_port()
        self.envoy_admin_port = envoy_admin_port or (free_port() if embedded else 0)
        self.embedded = embedded
        self.delta = delta
        self.extra_env = dict(env or {})
        self.log_path = workdir / "service.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.base_url = f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("INTEGRATION_SERVICE_",))}
        for name in ("POSTGRESQL_URL", "REDIS_URL", "CONSUL_HOST"):
            env.pop(name, None)
        env.update(
            {
                "INTEGRATION_SERVICE_CONFIG": str(self.workdir / "no-service-config.yaml"),
                "INTEGRATION_SERVICE_HOST": "127.0.0.1",
                "INTEGRATION_SERVICE_PORT": str(self.port),
                "INTEGRATION_SERVICE_DATA_DIR": str(self.workdir / "data"),
                "INTEGRATION_SERVICE_INTEGRATIONS_FILE": str(self.integrations_file),
                "INTEGRATION_SERVICE_RATE_LIMITS_FILE": str(self.rate_limits_file),
                "INTEGRATION_SERVICE_XDS_PORT": str(self.xds_port),
                "INTEGRATION_SERVICE_ENVOY_ADMIN_PORT": str(self.envoy_admin_port),
                "INTEGRATION_SERVICE_NODE_ID": "e2e-node",
                "INTEGRATION_SERVICE_XDS_DELTA": "true" if self.delta else "false",
                "LOG_FORMAT": "json",
                "LOG_LEVEL": "DEBUG",
                # No background probes through the sidecar unless a test asks (env): they
                # would spend rate-limit tokens and add upstream requests tests count.
                "INTEGRATION_SERVICE_PROBE_ENABLED": "false",
                # Tests' upstreams live on loopback, which the SSRF guard refuses otherwise.
                "INTEGRATION_SERVICE_UPSTREAM_ALLOWLIST": "127.0.0.0/8",
                # Tests give listeners free ephemeral ports (tests.support.ports), so the
                # range explicit listen_ports must fall in reaches up to 65535 (auto-assignment
                # still starts at 10000).
                "INTEGRATION_SERVICE_LISTEN_PORT_RANGE": "10000-65535",
                # The grants of the references tests register through the API, and file:
                # references under the tests' temporary directories.
                "INTEGRATION_SERVICE_GRANTS_FILE": str(self.grants_file),
                "INTEGRATION_SERVICE_FILE_ROOTS": tempfile.gettempdir(),
            }
        )
        if self.auth:
            env["INTEGRATION_SERVICE_ADMIN_KEY"] = "env:E2E_ADMIN_KEY"
            env["E2E_ADMIN_KEY"] = self.admin_key
        else:
            env["INTEGRATION_SERVICE_AUTH"] = "disabled"
        env.update(self.extra_env)
        return env

    def start(self) -> None:
        args = [sys.executable, "-m", "control_plane.cli", "run"]
        if not self.embedded:
            args.append("--no-envoy")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                args,
                env=self.environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=Path(__file__).resolve().parents[2],
            )

    async def wait_http(self, deadline_s: float = 30.0) -> None:
        end = time.monotonic() + deadline_s
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < end:
                assert self.process is not None and self.process.poll() is None, self.log()
                try:
                    async with session.get(f"{self.base_url}/health/live") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"service did not come up\n{self.log()}")

    async def wait_ready(self, deadline_s: float = 40.0) -> dict[str, Any]:
        end = time.monotonic() + deadline_s
        body: dict[str, Any] = {}
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < end:
                assert self.process is not None and self.process.poll() is None, self.log()
                try:
                    async with session.get(f"{self.base_url}/health/ready") as response:
                        body = await response.json()
                        if response.status == 200:
                            return body
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        raise AssertionError(f"service never ready: {body}\n{self.log()[-4000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode
