"""Fleet benchmark of the shared control plane (issue 16).  ``python -m bench.fleet``

One control-plane replica (``integration-service run --no-envoy``, ``topology: shared``,
xDS over TLS with client certificates, SQLite) serves 10 workloads (``w0``..``w9``, two per
tenant) and a registry of 100 integrations registered through its REST API, 10 per
workload (``workloads: [wK]``, plain ``http`` to loopback ports that nobody serves).
Connected to it: N simulated Envoys (``bench.fleet_clients``, their own process, client
``i`` presenting workload ``w{i % 10}``'s certificate, delta ADS, subscribing and ACKing
like Envoy) and 2 real Envoys (workloads ``w0`` and ``w1``, the shared bootstrap with a
TLS ``xds_cluster``). For N = 100 and 1,000 (``--quick``: 100):

* **cold**: from the moment the clients start connecting (the Envoys are started at the
  same moment) until the last node has every type ACKed (simulated: CDS, the EDS/SDS its
  clusters name, LDS, the RDS/SDS its listeners name; real: ``/ready``);
* **one change**: ``PUT`` of one of ``w0``'s integrations (its upstream port flips), from
  sending the request until every affected node (the ``w0`` clients, N/10, and the ``w0``
  Envoy) has ACKed the response carrying that cluster's new version (the Envoy: its
  ``/config_dump`` shows the new version, polled every 2 ms). Per change the figure is the
  last affected node; p50/p99 over the changes. The same changes with a single simulated
  node connected (N = 1, no Envoys) are the one-node reference: target p99 ≤ 10 times it;
* **RSS per node**: control-plane ``VmRSS`` with every node connected minus before any
  connected, divided by the nodes (N + 2). Target ≤ 0.5 MiB;
* **CPU per push**: control-plane ``utime + stime`` over the changes, per change (it
  includes serving the ``PUT``).

**A→B**: two replicas sharing a PostgreSQL 15 server (its change feed, LISTEN/NOTIFY,
keeps them in step), a real Envoy (``w0``) and 10 simulated clients (one per workload)
connected to replica B, one simulated ``w0`` client to replica A. 50 registrations
(``POST /integrations``, workload ``w0``) go through A; one sample runs from sending the
POST until the client on B has ACKed the new cluster, listener and route table (and until
B's Envoy lists the listener as active). The client on A gives the same-replica figure.

The control plane runs alone on one core, everything else on the other. Loopback only;
every wait is bounded; every process is stopped on exit (also on error and Ctrl-C).
Prints a Markdown section (appended to ``RESULTS.md`` by ``make bench``); ``--json``
writes the figures too.
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
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.fleet_nodes import Marker, RealEnvoy, SimulatedFleet
from bench.fleet_pki import FleetPki, Workload, workloads
from bench.load import median, percentile
from bench.procs import CORES, cpu_seconds, pin, rss_bytes
from bench.registry_docs import document, free_ports
from bench.run import _boost
from tests.support.ports import free_port
from tests.support.postgres import running_postgres, unique_database_name
from tests.support.service import ServiceProcess

__all__ = ["main", "markdown"]

MIB = 1024 * 1024
WORKLOADS = 10
ENVOY_WORKLOADS = ("w0", "w1")
UPSTREAM_PORTS = (9, 19)  # nobody serves them: the benchmark measures config, not traffic
TARGET_RSS_PER_NODE = 0.5 * MIB
TARGET_RATIO = 10.0


@dataclass(frozen=True, slots=True)
class Plan:
    sizes: tuple[int, ...] = (100, 1000)
    changes: int = 20
    ab_changes: int = 50
    per_workload: int = 10
    envoys: bool = True
    ab: bool = True


QUICK = Plan(sizes=(100,), changes=8, ab_changes=10)


def _document(ident: str, workload: Workload, listen_port: int, upstream: int) -> dict[str, Any]:
    doc = document(ident, upstream, listen_port)
    doc["tenant"], doc["workloads"] = workload.tenant, [workload.name]
    return doc


@dataclass(slots=True)
class ControlPlane:
    """One replica over HTTP: its process, and an HTTP session for its API."""

    service: ServiceProcess
    session: aiohttp.ClientSession

    @property
    def pid(self) -> int:
        assert self.service.process is not None
        return self.service.process.pid

    @property
    def xds_target(self) -> str:
        return f"127.0.0.1:{self.service.xds_port}"

    async def send(self, method: str, path: str, body: Any) -> dict[str, Any]:
        url = self.service.base_url + path
        async with self.session.request(method, url, json=body) as response:
            data = await response.json(content_type=None)
            if response.status not in (200, 201):
                raise RuntimeError(f"{method} {path}: {response.status} {data}")
            return dict(data)


@asynccontextmanager
async def _control_plane(
    workdir: Path, pki: FleetPki, env: dict[str, str] | None = None
) -> AsyncIterator[ControlPlane]:
    service = ServiceProcess(
        workdir,
        "integrations: []\n",
        env={
            **pki.env(),
            "INTEGRATION_SERVICE_XDS_HOST": "127.0.0.1",
            "INTEGRATION_SERVICE_PROBE_XDS_PORT": str(free_port()),
            "INTEGRATION_SERVICE_API_RATE_LIMIT": "0",
            "LOG_LEVEL": "WARNING",
            **(env or {}),
        },
    )
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    try:
        service.start()
        assert service.process is not None
        pin(service.process.pid, CORES[1])
        await service.wait_ready(deadline_s=60)
        yield ControlPlane(service, session)
    finally:
        await session.close()
        await asyncio.to_thread(service.stop)


async def _register(
    cp: ControlPlane, fleet: Sequence[Workload], per: int, ports: list[int]
) -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    for k, workload in enumerate(fleet):
        for j in range(per):
            ident = f"{workload.name}-{j:02d}"
            docs[ident] = _document(ident, workload, ports[k * per + j], UPSTREAM_PORTS[0])
            await cp.send("POST", "/integrations", docs[ident])
    return docs


def _summary(values: Sequence[float]) -> dict[str, float]:
    data = sorted(values)
    return {
        "p50": percentile(data, 50),
        "p99": percentile(data, 99),
        "max": data[-1] if data else float("nan"),
        "count": len(data),
    }


async def _settle(pid: int, seconds: float = 2.0) -> int:
    await asyncio.sleep(seconds)
    return rss_bytes(pid)


async def run_size(n: int, plan: Plan, tmp: Path, pki: FleetPki, *, envoys: bool) -> dict[str, Any]:
    """One replica, N simulated nodes (+ the real Envoys): cold, changes, RSS, CPU."""
    other = CORES[0]
    ports = free_ports(len(pki.fleet) * plan.per_workload)
    async with AsyncExitStack() as stack:
        cp = await stack.enter_async_context(_control_plane(tmp / f"cp-{n}", pki))
        docs = await _register(cp, pki.fleet, plan.per_workload, ports)
        rss_before = await _settle(cp.pid)
        sim = SimulatedFleet(cp.xds_target, pki, n, tmp / f"clients-{n}.log")
        stack.push_async_callback(sim.stop)
        real = [
            RealEnvoy(pki, w, cp.service.xds_port, tmp / f"envoy-{n}-{w}")
            for w in (ENVOY_WORKLOADS if envoys else ())
        ]
        for envoy in real:
            stack.push_async_callback(envoy.stop)
        await sim.start(other)
        await asyncio.gather(*(envoy.start(other) for envoy in real))
        last_sim = await sim.wait_cold(deadline_s=300)
        envoy_ready = [await envoy.wait_ready(deadline_s=120) for envoy in real]
        cold = {
            "simulated_s": last_sim - sim.started,
            "simulated_p50_s": median(t - sim.started for t in sim.cold.values()),
            "envoys_s": [t - e.started for t, e in zip(envoy_ready, real, strict=True)],
            "all_s": max([last_sim, *envoy_ready]) - sim.started,
        }
        rss_after = await _settle(cp.pid)
        nodes = n + len(real)
        w0_envoy = next((e for e in real if e.workload == "w0"), None)
        affected = sim.clients_of(0)
        samples: list[dict[str, Any]] = []
        cpu_start = cpu_seconds(cp.pid)
        for k in range(plan.changes):
            ident = f"w0-{k % plan.per_workload:02d}"
            doc = docs[ident]
            upstream = UPSTREAM_PORTS[k // plan.per_workload % 2 == 0]  # flips every round
            doc["upstream"] = f"http://127.0.0.1:{upstream}"
            before = await w0_envoy.cluster_version(ident) if w0_envoy else None
            markers: list[Marker] = [("CDS", ident)]
            sent = time.monotonic()
            await cp.send("PUT", f"/integrations/{ident}", doc)
            answered = time.monotonic()
            waits: list[Any] = [sim.wait_acked(sent, markers, affected, deadline_s=60)]
            if w0_envoy is not None:
                waits.append(w0_envoy.wait_cluster_change(ident, before, deadline_s=60))
            got = await asyncio.gather(*waits)
            per_node = [t - sent for t in got[0].values()]
            envoy_s = got[1] - sent if len(got) > 1 else None
            samples.append(
                {
                    "integration": ident,
                    "put_s": answered - sent,
                    "all_s": max([*per_node, *([envoy_s] if envoy_s is not None else [])]),
                    "nodes_p50_s": median(per_node),
                    "nodes_max_s": max(per_node),
                    "envoy_s": envoy_s,
                    "affected": len(per_node) + (1 if envoy_s is not None else 0),
                }
            )
            await asyncio.sleep(0.2)
        cpu = cpu_seconds(cp.pid) - cpu_start
        await asyncio.sleep(0.5)
        await sim.stop()
        fleet_cpu, fleet_rss = float(sim.bye.get("cpu", 0.0)), int(sim.bye.get("rss", 0))
        return {
            "n": n,
            "nodes": nodes,
            "integrations": len(docs),
            "cold": cold,
            "rss_before_bytes": rss_before,
            "rss_after_bytes": rss_after,
            "rss_per_node_bytes": (rss_after - rss_before) / nodes,
            "changes": samples,
            "change_all_s": _summary([s["all_s"] for s in samples]),
            "change_node_p50_s": _summary([s["nodes_p50_s"] for s in samples]),
            "put_s": _summary([s["put_s"] for s in samples]),
            "change_envoy_s": _summary([s["envoy_s"] for s in samples if s["envoy_s"] is not None]),
            "cpu_per_push_s": cpu / plan.changes,
            "clients_process": {"cpu_s": fleet_cpu, "rss_bytes": fleet_rss},
            # what one node of each workload held when cold: only its own integrations
            "held_per_workload": sim.held,
            # responses ACKed by nodes of other workloads during the changes (expected: 0)
            "unaffected_acks": sum(1 for e in sim.acks if e["c"] % WORKLOADS != 0),
        }


async def run_ab(plan: Plan, tmp: Path, pki: FleetPki) -> dict[str, Any]:
    """Two replicas on one PostgreSQL: registrations through A, ACKed by B's nodes."""
    other = CORES[0]
    ports = free_ports(len(pki.fleet) * plan.per_workload + plan.ab_changes)
    # In the system temp dir: under root the server runs as the postgres user, which
    # cannot enter this run's private directory.
    with running_postgres() as pg:
        dsn = pg.create_database(unique_database_name("fleet"))
        async with AsyncExitStack() as stack:
            env = {"POSTGRESQL_URL": dsn}
            a = await stack.enter_async_context(_control_plane(tmp / "ab-a", pki, env))
            b = await stack.enter_async_context(_control_plane(tmp / "ab-b", pki, env))
            await _register(a, pki.fleet, plan.per_workload, ports)
            on_b = SimulatedFleet(b.xds_target, pki, WORKLOADS, tmp / "ab-b.log", prefix="b")
            on_a = SimulatedFleet(a.xds_target, pki, 1, tmp / "ab-a.log", prefix="a")
            envoy = RealEnvoy(pki, "w0", b.service.xds_port, tmp / "ab-envoy")
            for closer in (on_b.stop, on_a.stop, envoy.stop):
                stack.push_async_callback(closer)
            await on_b.start(other)
            await on_a.start(other)
            await envoy.start(other)
            await on_b.wait_cold(60)
            await on_a.wait_cold(60)
            await envoy.wait_ready(60)
            samples: list[dict[str, float]] = []
            w0 = pki.fleet[0]
            for k in range(plan.ab_changes):
                ident = f"ab-{k:02d}"
                doc = _document(ident, w0, ports[-1 - k], UPSTREAM_PORTS[0])
                markers: list[Marker] = [("CDS", ident), ("LDS", ident), ("RDS", ident)]
                sent = time.monotonic()
                await a.send("POST", "/integrations", doc)
                answered = time.monotonic()
                b_client, a_client, envoy_t = await asyncio.gather(
                    on_b.wait_acked(sent, markers, on_b.clients_of(0), 60),
                    on_a.wait_acked(sent, markers, on_a.clients_of(0), 60),
                    envoy.wait_listener(ident, 60),
                )
                samples.append(
                    {
                        "post_s": answered - sent,
                        "b_client_s": max(b_client.values()) - sent,
                        "a_client_s": max(a_client.values()) - sent,
                        "b_envoy_s": envoy_t - sent,
                    }
                )
                await asyncio.sleep(0.1)
    return {
        "samples": samples,
        **{key: _summary([s[key] for s in samples]) for key in samples[0]},
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def markdown(result: dict[str, Any]) -> str:
    runs: list[dict[str, Any]] = result["runs"]
    base = result["baseline"]
    base_p99 = base["change_all_s"]["p99"]
    lines = [
        "## Shared control plane: fleet (issue 16)",
        "",
        "`python -m bench.fleet` (method in its docstring). One replica, `topology: shared`, "
        f"SQLite; {runs[0]['integrations'] if runs else 100} integrations over "
        f"{WORKLOADS} workloads (10 each); N simulated Envoys (delta ADS, TLS client "
        "certificates, their own process) plus 2 real Envoys. The control plane has one core "
        "to itself. Changes: `PUT` of one `w0` integration (its cluster changes), "
        f"{result['plan']['changes']} per run; affected nodes: the `w0` ones (N/10 + 1 Envoy).",
        "",
    ]
    rows = [
        [
            f"{r['n']:,} (+2 Envoys)" if r["nodes"] > r["n"] else f"{r['n']:,}",
            f"{r['cold']['all_s']:.2f}",
            _ms(r["put_s"]["p50"]),
            _ms(r["change_all_s"]["p50"]),
            _ms(r["change_all_s"]["p99"]),
            f"{r['change_all_s']['p99'] / base_p99:.1f}x",
            _ms(r["change_envoy_s"]["p50"]) if r["change_envoy_s"]["count"] else "-",
            f"{r['rss_per_node_bytes'] / MIB:.3f}",
            _ms(r["cpu_per_push_s"]),
        ]
        for r in [base, *runs]
    ]
    header = [
        "nodes",
        "cold, all ACKed s",
        "PUT answered p50 ms",
        "change → all affected ACKed p50 ms",
        "p99 ms",
        "p99 / one node",
        "w0 Envoy p50 ms",
        "CP RSS per node MiB",
        "CP CPU per push ms",
    ]
    lines += [
        *_table(header, rows),
        "",
        f"p99 is nearest-rank over {result['plan']['changes']} changes, so it is their maximum. "
        "The one-node row's RSS is one node's difference, mostly noise; the figure is meant "
        "at N = 100 and 1,000. The simulated clients, the Envoys and this orchestrator share "
        "the other core.",
        "",
    ]
    biggest = max(runs, key=lambda r: r["n"]) if runs else None
    if biggest is not None:
        ratio = biggest["change_all_s"]["p99"] / base_p99
        per_node = biggest["rss_per_node_bytes"]
        lines += [
            f"Targets at {biggest['nodes']:,} nodes on one replica: RSS per node "
            f"{per_node / MIB:.3f} MiB (target ≤ 0.5 MiB: "
            f"**{'met' if per_node <= TARGET_RSS_PER_NODE else 'missed'}**); one change "
            f"ACKed by all affected nodes at p99 {_ms(biggest['change_all_s']['p99'])} ms, "
            f"{ratio:.1f} times the one-node push ({_ms(base_p99)} ms; target ≤ 10 times: "
            f"**{'met' if ratio <= TARGET_RATIO else 'missed'}**).",
            "",
        ]
        for r in runs:
            cold = r["cold"]
            envoys = ", ".join(f"{s:.2f}" for s in cold["envoys_s"]) or "none"
            lines.append(
                f"- N = {r['n']:,}: cold — simulated nodes p50 {cold['simulated_p50_s']:.2f} s, "
                f"last {cold['simulated_s']:.2f} s; real Envoys ready after {envoys} s. CP RSS "
                f"{r['rss_before_bytes'] / MIB:.0f} MiB before, {r['rss_after_bytes'] / MIB:.0f}"
                f" MiB with every node. Responses to unaffected nodes during the changes: "
                f"{r.get('unaffected_acks', '?')}. The clients' process: "
                f"{r['clients_process']['rss_bytes'] / MIB:.0f} MiB, "
                f"{r['clients_process']['cpu_s']:.1f} s CPU."
            )
        lines.append("")
    ab = result.get("ab")
    if ab:
        ab_rows = [
            [label, _ms(ab[key]["p50"]), _ms(ab[key]["p99"]), _ms(ab[key]["max"])]
            for label, key in (
                ("POST answered by A", "post_s"),
                ("client on A ACKed (same replica)", "a_client_s"),
                ("client on B ACKed (other replica)", "b_client_s"),
                ("Envoy on B: listener active", "b_envoy_s"),
            )
        ]
        lines += [
            f"A→B: two replicas on one PostgreSQL 15; {ab['post_s']['count']} registrations "
            "through replica A, each a new `w0` integration (cluster, listener, route table); "
            "time from sending the `POST` (p99 nearest-rank, so the maximum here):",
            "",
            *_table(["", "p50 ms", "p99 ms", "max ms"], ab_rows),
            "",
        ]
    lines += [
        f"Priority: {result.get('priority', 'normal')}. Tree: {result.get('revision', '?')}.",
        "",
    ]
    return "\n".join(lines)


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    # SIGTERM (a timeout, a CI cancel) unwinds like Ctrl-C: every process is stopped.
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    plan = QUICK if args.quick else Plan()
    if args.sizes is not None:
        plan = Plan(**{**asdict(plan), "sizes": tuple(args.sizes)})
    if args.no_ab:
        plan = Plan(**{**asdict(plan), "ab": False})
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp_name:
        tmp = Path(tmp_name)
        pki = FleetPki(tmp / "tls", workloads(WORKLOADS))
        print("[fleet] one node (reference)", file=sys.stderr, flush=True)
        baseline = await run_size(1, plan, tmp, pki, envoys=False)
        result: dict[str, Any] = {"plan": asdict(plan), "baseline": baseline}
        result.update(runs=[], ab=None)
        for n in plan.sizes:
            print(f"[fleet] N = {n}", file=sys.stderr, flush=True)
            result["runs"].append(await run_size(n, plan, tmp, pki, envoys=plan.envoys))
            _save(args.json, result)
        if plan.ab:
            print("[fleet] A→B", file=sys.stderr, flush=True)
            result["ab"] = await run_ab(plan, tmp, pki)
    return result


def _revision() -> str:
    """The commit measured, and whether the working tree had uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} (uncommitted changes present)" if dirty else head


def _save(path: Path | None, result: dict[str, Any]) -> None:
    """The figures so far (a later phase failing leaves the earlier ones on disk)."""
    if path is not None:
        path.write_text(json.dumps(result, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="N = 100 only, fewer changes")
    parser.add_argument("--sizes", type=int, nargs="*", help="simulated node counts")
    parser.add_argument("--no-ab", action="store_true", help="skip the two-replica run")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--no-boost", action="store_true", help="normal priority, no SCHED_RR")
    args = parser.parse_args(argv)
    if sys.platform != "linux":
        print("the benchmarks need Linux (/proc, CPU affinity)", file=sys.stderr)
        return 2
    priority = "normal" if args.no_boost else _boost()  # as bench.run: children inherit it
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        result = asyncio.run(_main(args))
        result["priority"] = priority
        result["revision"] = _revision()
        _save(args.json, result)
        print(markdown(result))
        return 0
    return 130


if __name__ == "__main__":
    raise SystemExit(main())
