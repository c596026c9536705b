"""Fleet-scale anchor (issue 20): our ADS server beside go-control-plane.

``python -m bench.anchor``

Both servers serve the **same bytes**: ``bench.anchor_server.write_dumps`` translates a
registry of 10 benchmark integrations (what one workload holds in ``bench.fleet``) with the
control plane's own pipeline, before and after one change (``int-00000`` moves to another
upstream port: its cluster changes), and writes each snapshot's serialized resources to a
file. The servers, each in its own process, pinned to one core (the clients on the other):

* **go-control-plane** (``bench/gocp``, built by ``scripts/gocp-anchor`` from the Go module
  proxy at a pinned version): ``cache.NewSnapshotCache`` + ``server.NewServer``, delta ADS,
  plaintext on loopback, one snapshot for every node;
* **ours, per pod** (``python -m bench.anchor_server``): the product's ADS server
  (``control_plane.xds.server.serve`` over ``SnapshotCache``), plaintext on loopback, one
  snapshot for every node, as in the per-pod topology;
* **ours, shared topology** (the real ``integration-service run --no-envoy`` with
  ``topology: shared``): every client presents one workload's certificate to the TLS gate;
  the same 10 integrations registered through the API for that workload. Its change is a
  ``PUT`` (API, pipeline, push), the others' a SIGHUP that swaps the dump.

The same N = 1,000 simulated Envoys (``bench.fleet_clients``, delta, subscribe and ACK like
Envoy) connect to each. Measured: **cold** (the clients start connecting → the last one has
ACKed everything), **one change pushed to all** (signal or PUT sent → the last client ACKed
the changed cluster; median over the changes), server CPU (``utime + stime``) for each,
**bytes** the clients received (serialized responses), and **RSS** before any client, with
all connected, and per node. Prints a Markdown section; ``--json`` writes the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.anchor_server import CHANGED, write_dumps
from bench.fleet_nodes import SimulatedFleet
from bench.fleet_pki import FleetPki, workloads
from bench.load import median
from bench.procs import CORES, ROOT, cpu_seconds, pin, rss_bytes
from bench.registry_docs import free_ports

__all__ = ["main", "markdown"]

MIB = 1024 * 1024
INTEGRATIONS = 10
TARGET_TIME, TARGET_CPU, TARGET_RSS = 2.0, 2.0, 3.0


class _Server:
    """A server process that prints ``READY {json}`` (and ``SWAPPED`` per change)."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.argv, self.log = argv, log
        self.process: asyncio.subprocess.Process | None = None
        self.ready: dict[str, Any] = {}
        self.swapped: list[dict[str, Any]] = []
        self._reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self) -> None:
        with self.log.open("ab") as err:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv, stdout=asyncio.subprocess.PIPE, stderr=err, cwd=ROOT
            )
        assert self.process.stdout is not None
        async with asyncio.timeout(60):
            while not self.ready:
                line = await self.process.stdout.readline()
                if not line:
                    raise RuntimeError(f"{self.argv[0]} exited: see {self.log}")
                if line.startswith(b"READY "):
                    self.ready = json.loads(line[6:])
        pin(self.pid, CORES[1])
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            if line.startswith(b"SWAPPED "):
                self.swapped.append(json.loads(line[8:]))

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(10):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        if self._reader is not None:
            self._reader.cancel()


async def _measure(
    pid: int,
    target: str,
    pki: FleetPki | None,
    n: int,
    changes: int,
    change: Callable[[int], Awaitable[None]],
    log: Path,
) -> dict[str, Any]:
    await asyncio.sleep(1.0)
    rss_before = rss_bytes(pid)
    sim = SimulatedFleet(target, pki, n, log, limit_s=600.0)
    try:
        cpu0 = cpu_seconds(pid)
        await sim.start(CORES[0])
        last = await sim.wait_cold(deadline_s=300)
        cold_cpu = cpu_seconds(pid) - cpu0
        cold_s = last - sim.started
        await asyncio.sleep(2.0)
        rss_after = rss_bytes(pid)
        clients = list(range(n))
        push: list[float] = []
        acks_before = len(sim.acks)
        cpu1 = cpu_seconds(pid)
        for k in range(changes):
            sent = time.monotonic()
            await change(k)
            done = await sim.wait_acked(sent, [("CDS", CHANGED)], clients, deadline_s=120)
            push.append(max(done.values()) - sent)
            await asyncio.sleep(0.3)
        push_cpu = (cpu_seconds(pid) - cpu1) / changes
        change_bytes = sum(int(e.get("b", 0)) for e in sim.acks[acks_before:])
    finally:
        await sim.stop()
    return {
        "n": n,
        "cold_s": cold_s,
        "cold_cpu_s": cold_cpu,
        "cold_bytes_per_node": sum(sim.cold_bytes.values()) / n,
        "push_s": median(push),
        "push_all_s": push,
        "push_cpu_s": push_cpu,
        "change_bytes_per_node": change_bytes / changes / n,
        "rss_before_bytes": rss_before,
        "rss_after_bytes": rss_after,
        "rss_per_node_bytes": (rss_after - rss_before) / n,
        "clients_cpu_s": float(sim.bye.get("cpu", 0.0)),
    }


async def _signal_run(argv: list[str], n: int, changes: int, tmp: Path, tag: str) -> dict[str, Any]:
    server = _Server(argv, tmp / f"{tag}.log")
    try:
        await server.start()

        async def hup(_: int) -> None:
            assert server.process is not None
            server.process.send_signal(signal.SIGHUP)

        target = f"127.0.0.1:{server.ready['port']}"
        result = await _measure(server.pid, target, None, n, changes, hup, tmp / f"{tag}-c.log")
        result["set_snapshot_s"] = (
            median(s["set_s"] for s in server.swapped) if server.swapped else None
        )
        return result
    finally:
        await server.stop()


async def _shared_run(n: int, changes: int, tmp: Path) -> dict[str, Any]:
    from bench.fleet import _control_plane, _document

    pki = FleetPki(tmp / "tls", workloads(1))
    ports = free_ports(INTEGRATIONS)
    async with _control_plane(tmp / "cp-shared", pki) as cp:
        docs = []
        for i in range(INTEGRATIONS):
            doc = _document(f"int-{i:05d}", pki.fleet[0], ports[i], 8080)
            await cp.send("POST", "/integrations", doc)
            docs.append(doc)

        async def put(k: int) -> None:
            docs[0]["upstream"] = f"http://127.0.0.1:{8081 if k % 2 == 0 else 8080}"
            await cp.send("PUT", f"/integrations/{CHANGED}", docs[0])

        log = tmp / "shared-c.log"
        return await _measure(cp.pid, cp.xds_target, pki, n, changes, put, log)


def _gocp_binary() -> str:
    out = subprocess.run(
        [str(ROOT / "scripts" / "gocp-anchor")], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-anchor-") as name:
        tmp = Path(name)
        a, b = await write_dumps(INTEGRATIONS, tmp)
        gocp = [args.gocp or _gocp_binary(), "-dump", str(a), "-next", str(b)]
        ours = [sys.executable, "-m", "bench.anchor_server", "--dump", str(a), "--next", str(b)]
        result: dict[str, Any] = {
            "n": args.n,
            "integrations": INTEGRATIONS,
            "changes": args.changes,
            "rows": {},
        }
        # Interleaved, so that a noisy stretch of the shared machine hits both servers.
        for rnd in range(args.rounds):
            for tag, argv in (("gocp", gocp), ("ours", ours)):
                print(f"[anchor] round {rnd + 1}: {tag}", file=sys.stderr, flush=True)
                row = await _signal_run(argv, args.n, args.changes, tmp, f"{tag}-{rnd}")
                result["rows"].setdefault(tag, []).append(row)
        if not args.no_shared:
            print("[anchor] ours, shared topology (TLS gate)", file=sys.stderr, flush=True)
            result["rows"]["shared"] = [await _shared_run(args.n, args.changes, tmp)]
    return result


def _med(rows: list[dict[str, Any]], key: str) -> float:
    return median(float(r[key]) for r in rows)


def markdown(result: dict[str, Any]) -> str:
    rows = result["rows"]
    labels = {
        "gocp": "go-control-plane v0.14.0 (plaintext)",
        "ours": "ours, per pod (plaintext)",
        "shared": "ours, shared topology (TLS gate, PUT)",
    }
    keys = [
        ("cold_s", "cold: all ACKed s", 1, "{:.2f}"),
        ("cold_cpu_s", "cold CPU s", 1, "{:.2f}"),
        ("push_s", "change → all ACKed ms", 1000, "{:.1f}"),
        ("push_cpu_s", "CPU per change ms", 1000, "{:.1f}"),
        ("cold_bytes_per_node", "cold bytes per node", 1, "{:,.0f}"),
        ("change_bytes_per_node", "change bytes per node", 1, "{:,.0f}"),
        ("rss_before_bytes", "RSS idle MiB", 1 / MIB, "{:.1f}"),
        ("rss_per_node_bytes", "RSS per node KiB", 1024 / MIB, "{:.1f}"),
    ]
    lines = [
        "## go-control-plane anchor (issue 20)",
        "",
        f"`python -m bench.anchor` (method in its docstring): N = {result['n']:,} simulated "
        f"delta clients, {result['integrations']} integrations in the snapshot, each server "
        "pinned to one core, the clients on the other; medians over "
        f"{len(rows.get('gocp', []))} interleaved rounds of {result.get('changes', '?')} "
        "changes. Priority: " + str(result.get("priority", "normal")) + ".",
        "",
        "| server | " + " | ".join(k[1] for k in keys) + " |",
        "|---" + "|---:" * len(keys) + "|",
    ]
    for tag, label in labels.items():
        if tag in rows:
            cells = [k[3].format(_med(rows[tag], k[0]) * k[2]) for k in keys]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    ratios: dict[str, float] = {}
    if "gocp" in rows and "ours" in rows:
        for key in ("cold_s", "cold_cpu_s", "push_s", "push_cpu_s", "rss_per_node_bytes"):
            ratios[key] = _med(rows["ours"], key) / _med(rows["gocp"], key)
        targets = {
            "push_s": TARGET_TIME,
            "push_cpu_s": TARGET_CPU,
            "rss_per_node_bytes": TARGET_RSS,
        }
        lines += [
            "",
            "Ours ÷ go-control-plane (medians over rounds): "
            + ", ".join(f"{key} {value:.2f}x" for key, value in ratios.items())
            + ". Targets: "
            + "; ".join(
                f"{key} ≤ {limit:g}x **{'met' if ratios[key] <= limit else 'missed'}**"
                for key, limit in targets.items()
            )
            + ".",
        ]
    result["ratios"] = ratios
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.anchor", description=__doc__)
    parser.add_argument("--n", type=int, default=1000, help="simulated delta clients")
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--gocp", help="the harness binary (default: scripts/gocp-anchor)")
    parser.add_argument("--no-shared", action="store_true")
    parser.add_argument("--quick", action="store_true", help="N = 100, one round")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--no-boost", action="store_true", help="normal priority, no SCHED_RR")
    args = parser.parse_args(argv)
    from bench.run import _boost

    priority = "normal" if args.no_boost else _boost()  # as bench.run: children inherit it
    if args.quick:
        args.n, args.rounds, args.changes = 100, 1, 4
    with contextlib.suppress(KeyboardInterrupt):
        result = asyncio.run(_main(args))
        result["priority"] = priority
        text = markdown(result)
        if args.json is not None:
            args.json.write_text(json.dumps(result, indent=2))
        print(text)
        return 0
    return 130


if __name__ == "__main__":
    raise SystemExit(main())
