"""Vetted resolution's cost: V1 data-path latency, V2 resolver CPU.  ``python -m bench.vetted``

**V1 (B1-style).** One real stack (the control plane as a subprocess configuring a real
Envoy, ``--concurrency 1``) serves two declared integrations to the same fast loopback
upstream (``bench/upstream.py``) with the benchmark policies (``bench/registry_docs.py``):
``static`` names the upstream by address (a ``STATIC`` cluster) and ``vetted`` by a name
with ``resolution: vetted``, which the control plane resolves against a loopback DNS server
(``tests/support/fake_dns.py``, answering 127.0.0.1) and serves over EDS. Open-loop load
(``bench/loadgen.py``) at 1,000 req/s runs against each in turn, the order alternating per
round; the figures are the per-round ratios vetted/static of p50 and p99, then the median.
Envoy and the upstream share one core, the generator the other, as in B1.

**V2.** The resolver alone, in this process, with 1,000 names on the loopback DNS server:
the CPU time of the event-loop thread (``time.thread_time``: the DNS server's own threads
are not counted) for one refresh of every name, divided by the names; steady state (same
answers) and changing answers (every address flips, so every name is published).

Nothing asserts a number. Bounded: fixed durations and round counts, loopback only.
``--quick`` shortens everything. Prints the results as JSON and a Markdown section.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.load import LoadSpec, median, run_load
from bench.procs import CORES, Child, pin
from bench.registry_docs import document, free_ports, integrations_yaml
from bench.run import _boost
from bench.stack import wait_http
from control_plane.discovery.dns import VettedResolver
from control_plane.discovery.dns_lookup import DnsLookup, parse_servers
from control_plane.model import Integration
from control_plane.registry.loader import integration_from_document
from control_plane.security.ssrf import Allowlist
from tests.support.fake_dns import FakeDns, running_dns
from tests.support.stack import running_stack

__all__ = ["main"]

VETTED_NAME = "upstream.vetted.bench"
# ``control`` is a second STATIC integration, identical to ``static``: its ratio to
# ``static`` is what position and noise alone give.
PATHS = ("static", "control", "vetted")


async def _latency(tmp: Path, dns: FakeDns, rounds: int, duration: float) -> dict[str, Any]:
    gen_cpu, proxy_cpu = CORES
    upstream = Child(
        "bench.upstream",
        ["--labels", "A", "--stats", str(tmp / "up.json")]
        + (["--cpu", str(proxy_cpu)] if proxy_cpu is not None else []),
        log=tmp / "upstream.log",
    )
    await upstream.start(wait_ready=True)
    up_port = int(upstream.ready["ports"][0])
    dns.set(VETTED_NAME, ["127.0.0.1"], ttl=300)
    ports = dict(zip(PATHS, free_ports(len(PATHS), start=18000, stop=18600), strict=True))
    docs = [document(path, up_port, port) for path, port in ports.items()]
    docs[-1]["upstream"] = {"url": f"http://{VETTED_NAME}:{up_port}", "resolution": "vetted"}
    registry = integrations_yaml(docs)
    env = {"INTEGRATION_SERVICE_DNS_SERVERS": dns.server, "LOG_LEVEL": "INFO"}
    runs: list[dict[str, Any]] = []
    try:
        async with running_stack(tmp / "stack", registry, env=env, ports=ports) as stack:
            assert stack.envoy.pid is not None and stack.service.process is not None
            pin(stack.envoy.pid, proxy_cpu)
            pin(stack.service.process.pid, gen_cpu)
            for port in ports.values():
                await wait_http(f"http://127.0.0.1:{port}/", label="A")
            dump = json.dumps(await stack.config_dump())
            if '"EDS"' not in dump:
                raise RuntimeError("the vetted integration is not an EDS cluster")
            for round_no in range(rounds):
                shift = round_no % len(PATHS)
                for path in PATHS[shift:] + PATHS[:shift]:
                    load = await run_load(
                        LoadSpec(
                            port=ports[path], rate=1000, duration=duration, warmup=1.0, cpu=gen_cpu
                        ),
                        tmp / f"v1-{path}-{round_no}.json",
                    )
                    runs.append({"round": round_no, "path": path, **load.summary()})
    finally:
        await upstream.stop()
    summary: dict[str, Any] = {}
    for path in PATHS:
        mine = [r for r in runs if r["path"] == path]
        summary[path] = {k: median(r[k] for r in mine) for k in ("p50", "p99", "p99.9", "errors")}
    for path in ("vetted", "control"):
        for key in ("p50", "p99"):
            ratios = []
            for round_no in range(rounds):
                row = {r["path"]: r[key] for r in runs if r["round"] == round_no}
                ratios.append(row[path] / row["static"])
            summary[f"{path}_{key}_ratio"] = median(ratios)
            summary[f"{path}_{key}_ratios"] = ratios
    return {"runs": runs, "summary": summary, "duration_s": duration, "rate": 1000}


class _View:
    def __init__(self, items: Sequence[Integration]) -> None:
        self.items = list(items)
        self.generation = 1

    def enabled(self) -> list[Integration]:
        return self.items


def _names(count: int) -> list[str]:
    return [f"n{i:04d}.vetted.bench" for i in range(count)]


def _point(dns: FakeDns, names: Sequence[str], last_octet: int) -> None:
    for i, name in enumerate(names):
        dns.set(name, [f"127.0.{i // 250}.{last_octet}", f"127.1.{i // 250}.{i % 250}"], ttl=300)


async def _resolver_cpu(dns: FakeDns, count: int, rounds: int) -> dict[str, Any]:
    names = _names(count)
    _point(dns, names, 10)
    items = [
        integration_from_document(
            {"id": f"i{i:04d}", "kind": "http", "upstream": f"https://{name}"},
            source="registered",
        )
        for i, name in enumerate(names)
    ]
    published: list[int] = []

    def publish(changes: Mapping[str, Sequence[str]], pending: int | None) -> None:
        published.append(len(changes))

    resolver = VettedResolver(
        DnsLookup(parse_servers(dns.server)), Allowlist.parse("127.0.0.0/8"), publish
    )
    start_cpu, start_wall = time.thread_time(), time.perf_counter()
    await resolver.apply(_View(items))
    first = {
        "cpu_ms_per_name": (time.thread_time() - start_cpu) / count * 1000,
        "wall_s": time.perf_counter() - start_wall,
    }
    served = sum(1 for s in resolver.states.values() if s.served)
    if served != count:
        raise RuntimeError(f"only {served} of {count} names resolved")
    passes: dict[str, list[dict[str, float]]] = {"steady": [], "changing": []}
    for round_no in range(rounds):
        for mode in ("steady", "changing"):
            if mode == "changing":
                _point(dns, names, 11 + round_no % 2 * 9)
            published.clear()
            cpu, wall = time.thread_time(), time.perf_counter()
            await resolver.refresh_all()
            passes[mode].append(
                {
                    "cpu_ms_per_name": (time.thread_time() - cpu) / count * 1000,
                    "wall_s": time.perf_counter() - wall,
                    "published": float(sum(published)),
                }
            )
    return {
        "names": count,
        "rounds": rounds,
        "first_resolution": first,
        **{
            mode: {
                "cpu_ms_per_name": statistics.median(p["cpu_ms_per_name"] for p in runs),
                "cpu_ms_per_name_max": max(p["cpu_ms_per_name"] for p in runs),
                "wall_s": statistics.median(p["wall_s"] for p in runs),
                "published": statistics.median(p["published"] for p in runs),
            }
            for mode, runs in passes.items()
        },
    }


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _joined(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.3f}" for v in values)


def markdown(result: Mapping[str, Any]) -> str:
    v1, v2 = result["v1"]["summary"], result["v2"]
    first = v2["first_resolution"]
    latency = [
        [path, *(f"{v1[path][k]:.0f}" for k in ("p50", "p99", "p99.9", "errors"))] for path in PATHS
    ]
    cpu = [
        [
            mode,
            f"{v2[mode]['cpu_ms_per_name']:.3f}",
            f"{v2[mode]['cpu_ms_per_name_max']:.3f}",
            f"{v2[mode]['wall_s']:.2f}",
            f"{v2[mode]['published']:.0f}",
        ]
        for mode in ("steady", "changing")
    ]
    cpu.append(
        [
            "first (registry listener)",
            f"{first['cpu_ms_per_name']:.3f}",
            "",
            f"{first['wall_s']:.2f}",
            f"{v2['names']:,}",
        ]
    )
    return "\n".join(
        [
            "## Vetted resolution (V1 latency, V2 resolver CPU)",
            "",
            "`python -m bench.vetted` (method in its docstring). V1: one stack, a `STATIC` "
            "integration and a vetted one (EDS, fed by the control plane's resolver) to the "
            f"same upstream, {result['v1']['rate']:,} req/s open loop, "
            f"{result['v1']['duration_s']:g} s per run, {len(v1['vetted_p50_ratios'])} rounds "
            "(order rotated per round); `control` is a second `STATIC` integration, identical "
            "to `static`, so its ratio shows what position and noise alone give.",
            "",
            *_table(["integration", "p50 µs", "p99 µs", "p99.9 µs", "errors"], latency),
            "",
            *(
                line
                for path in ("vetted", "control")
                for line in (
                    f"Ratio {path}/static (median of per-round ratios): "
                    f"p50 **{v1[f'{path}_p50_ratio']:.3f}**, "
                    f"p99 **{v1[f'{path}_p99_ratio']:.3f}** "
                    f"(per round: p50 {_joined(v1[f'{path}_p50_ratios'])}; "
                    f"p99 {_joined(v1[f'{path}_p99_ratios'])}).",
                    "",
                )
            ),
            f"Priority: {result.get('priority', 'normal')}.",
            "",
            f"V2: {v2['names']:,} names, two addresses each, on the loopback DNS server; CPU "
            "of the event-loop thread per name per refresh (median of "
            f"{v2['rounds']} passes; target ≤ 1 ms):",
            "",
            *_table(["pass", "CPU ms per name", "max", "wall s per pass", "names published"], cpu),
            "",
        ]
    )


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    rounds, duration = (1, 2.0) if args.quick else (6, 4.0)
    with tempfile.TemporaryDirectory(prefix="bench-vetted-") as tmp, running_dns() as dns:
        v2 = await _resolver_cpu(dns, args.names, 2 if args.quick else 5)
        v1 = await _latency(Path(tmp), dns, rounds, duration)
    return {"v1": v1, "v2": v2}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.vetted", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one short round")
    parser.add_argument("--names", type=int, default=1000, help="names for V2")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--no-boost", action="store_true", help="normal priority, no SCHED_RR")
    args = parser.parse_args()
    priority = "normal" if args.no_boost else _boost()  # as bench.run: children inherit it
    result = asyncio.run(_main(args))
    result["priority"] = priority
    for run in result["v1"]["runs"]:
        run.pop("distribution", None)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(markdown(result))


if __name__ == "__main__":
    main()
