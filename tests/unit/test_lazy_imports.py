"""Issue 20's rule: no optional library is imported until it is used.

In a fresh interpreter: import the CLI and the wiring, build the per-pod default app (no
REDIS_URL, no POSTGRESQL_URL, no token sharing, no JWT issuer, status page never opened)
on the example registry and run its start-up (store, registry, translation, xDS server;
no Envoy, probes off), then list which of the libraries below are in ``sys.modules``.
Each costs megabytes of resident memory per pod (bench/footprint.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Loaded only by what needs them: Redis (REDIS_URL), PostgreSQL (POSTGRESQL_URL), pyjwt and
# cryptography (JWT bearer tokens, private_key_jwt clients, the shared-token cipher, the
# shared topology's certificate reading), dnspython (the first vetted lookup), Jinja2 and
# the SSE helper (the status page's first page and stream), and the static-bootstrap
# message types (``render --format envoy``).
LAZY = (
    "redis",
    "asyncpg",
    "jwt",
    "cryptography",
    "dns",
    "jinja2",
    "aiohttp_jinja2",
    "aiohttp_sse",
    "envoy.config.bootstrap.v3.bootstrap_pb2",
)

_PROGRAM = """
import asyncio, json, sys, tempfile
from pathlib import Path

import control_plane.cli
from aiohttp import web
from control_plane.app.wiring import create_app
from control_plane.settings import Settings

async def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        settings = Settings(
            data_dir=Path(name),
            xds_port=0,
            envoy_admin_port=0,
            probe_enabled=False,
            grants_file=Path(name) / "no-grants.yaml",
        )
        runner = web.AppRunner(create_app(settings, environ={}))
        await runner.setup()  # store opened, registry loaded and translated, xDS serving
        await runner.cleanup()

asyncio.run(main())
print(json.dumps(sorted(sys.modules)))
"""


def test_the_per_pod_default_imports_no_optional_library() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTEGRATION_SERVICE_")}
    for name in ("REDIS_URL", "POSTGRESQL_URL", "AUTH0_DOMAIN"):
        env.pop(name, None)
    out = subprocess.run(
        [sys.executable, "-c", _PROGRAM],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    loaded = set(json.loads(out.splitlines()[-1]))
    found = sorted(m for m in LAZY if any(x == m or x.startswith(m + ".") for x in loaded))
    assert found == [], f"imported without being used: {found}"
    assert "control_plane.xds.server" in loaded, "the start-up ran"
