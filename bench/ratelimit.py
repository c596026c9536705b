"""Global quotas (``scope: global``): exactness across Envoys, added latency, service CPU.

``python -m bench.ratelimit``

**G1 exactness.** Three control-plane replicas, each with its own real Envoy, share one real
envoyproxy/ratelimit (built by ``scripts/ratelimit-service``) over a private redis-server.
One integration with a quota of 60 per minute is driven at 2x (120 per minute, round-robin
over the three Envoys) for two whole minute windows; the figures are the upstream hits in
each window (``tests/support/quota_load.py``). ``--quick``: 20 per second for 3 windows.

**G2 latency and CPU.** One stack, two integrations to the same fast loopback upstream
(``bench/upstream.py``): ``pod`` (the benchmark policies, an Envoy local bucket) and
``global`` (a quota no run reaches, so every request asks the service). Open-loop load
(``bench/loadgen.py``) at 1,000 req/s against each in turn, order alternating per round;
ratios global/pod of p50 and p99 per round, then the median. During the global runs the
CPU time of the ratelimit process and of redis-server is read from /proc and given per
1,000 req/s.

Nothing asserts a number. Bounded: fixed durations and rounds, loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.load import LoadSpec, median, run_load
from bench.procs import CORES, Child, cpu_seconds, pin
from bench.registry_docs import document, free_ports, integrations_yaml
from bench.stack import wait_http
from tests.support.quota_load import hits_upstream, next_window, paced, stacks
from tests.support.ratelimit_service import RateLimitService
from tests.support.redis_server import RedisServer
from tests.support.stack import running_stack

__all__ = ["main"]


async def _exactness(tmp: Path, service: RateLimitService, quick: bool) -> dict[str, Any]:
    quota, unit, windows = (20, 1, 3) if quick else (60, 60, 2)
    per = "1s" if unit == 1 else "1m"
    rule = f"{{requests: {quota}, per: {per}, scope: global}}"
    async with (
        hits_upstream() as upstream,
        stacks(tmp / "g1", service, upstream, {"fleetwide": rule}, count=3) as replicas,
    ):
        targets = [(s.sidecar("fleetwide", "/"), None) for s in replicas]
        first = await next_window(unit)
        statuses = await paced(
            replicas[0].session, targets, 2 * quota / unit, unit * windows + unit * 0.9
        )
    counts = [
        sum(1 for t, _ in upstream.seen if first + k * unit <= t < first + (k + 1) * unit)
        for k in range(windows)
    ]
    return {
        "quota": quota,
        "unit_s": unit,
        "offered_per_window": 2 * quota,
        "hits_per_window": counts,
        "statuses": {str(k): statuses.count(k) for k in sorted(set(statuses))},
    }


async def _latency(
    tmp: Path, service: RateLimitService, redis: RedisServer, rounds: int, duration: float
) -> dict[str, Any]:
    gen_cpu, proxy_cpu = CORES
    upstream = Child(
        "bench.upstream",
        ["--labels", "A", "--stats", str(tmp / "up.json")]
        + (["--cpu", str(proxy_cpu)] if proxy_cpu is not None else []),
        log=tmp / "upstream.log",
    )
    await upstream.start(wait_ready=True)
    up_port = int(upstream.ready["ports"][0])
    paths = ("pod", "fleet", "global")
    ports = dict(zip(paths, free_ports(3, start=18000, stop=18600), strict=True))
    docs = [document(path, up_port, port) for path, port in ports.items()]
    # fleet: the same local bucket, divided by the fleet's size (Envoy-native, nothing in
    # the request path beside what pod scope has).
    docs[1]["policies"]["rate_limit"] = {
        "requests": 10_000_000,
        "per": "1s",
        "burst": 10_000_000,
        "scope": "fleet",
    }
    docs[2]["policies"]["rate_limit"] = {"requests": 10_000_000, "per": "1s", "scope": "global"}
    env = {
        "INTEGRATION_SERVICE_RATELIMIT_ADDRESS": service.address,
        "INTEGRATION_SERVICE_RATELIMIT_CONFIG_DIR": str(service.config_dir),
        "LOG_LEVEL": "INFO",
    }
    runs: list[dict[str, Any]] = []
    assert service.process is not None and redis.process is not None
    service_pids = {"ratelimit": service.process.pid, "redis": redis.process.pid}
    for pid in service_pids.values():
        pin(pid, proxy_cpu)  # the data path's side of the machine, as Envoy
    try:
        async with running_stack(
            tmp / "g2", integrations_yaml(docs), env=env, ports=ports
        ) as stack:
            assert stack.envoy.pid is not None and stack.service.process is not None
            pin(stack.envoy.pid, proxy_cpu)
            pin(stack.service.process.pid, gen_cpu)
            for port in ports.values():
                await wait_http(f"http://127.0.0.1:{port}/", label="A")
            for round_no in range(rounds):
                for path in paths if round_no % 2 == 0 else paths[::-1]:  # order alternating
                    before = {n: cpu_seconds(p) for n, p in service_pids.items()}
                    load = await run_load(
                        LoadSpec(
                            port=ports[path], rate=1000, duration=duration, warmup=1.0, cpu=gen_cpu
                        ),
                        tmp / f"g2-{path}-{round_no}.json",
                    )
                    spent = {n: cpu_seconds(p) - before[n] for n, p in service_pids.items()}
                    wall = duration + 1.0  # the warm-up is sent at the same rate
                    runs.append(
                        {
                            "round": round_no,
                            "path": path,
                            **load.summary(),
                            # CPU-seconds per second (1.0 = one core) per 1,000 req/s.
                            **{f"{n}_cores": s / wall for n, s in spent.items()},
                        }
                    )
            stats = await stack.stats()
    finally:
        await upstream.stop()
    summary: dict[str, Any] = {}
    for path in paths:
        mine = [r for r in runs if r["path"] == path]
        keys = ("p50", "p99", "p99.9", "errors", "ratelimit_cores", "redis_cores")
        summary[path] = {k: median(r[k] for r in mine) for k in keys}
    for key in ("p50", "p99"):
        for scope, label in (("global", ""), ("fleet", "fleet_")):
            ratios = []
            for round_no in range(rounds):
                row = {r["path"]: r[key] for r in runs if r["round"] == round_no}
                ratios.append(row[scope] / row["pod"])
            summary[f"{label}{key}_ratio"] = median(ratios)
            summary[f"{label}{key}_ratios"] = ratios
    summary["envoy"] = {
        k: stats.get(f"cluster.global.ratelimit.{k}", 0)
        for k in ("ok", "over_limit", "error", "failure_mode_allowed")
    }
    return {"runs": runs, "summary": summary, "duration_s": duration, "rate": 1000}


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def markdown(result: Mapping[str, Any]) -> str:
    g1, g2 = result["g1"], result["g2"]["summary"]
    unit = "second" if g1["unit_s"] == 1 else "minute"
    rows = [
        [path, *(f"{g2[path][k]:.0f}" for k in ("p50", "p99", "p99.9", "errors"))]
        for path in ("pod", "fleet", "global")
    ]
    cpu = g2["global"]
    return "\n".join(
        [
            "## Global quotas (G1 exactness, G2 latency and CPU)",
            "",
            "`python -m bench.ratelimit` (method in its docstring): real Envoys, real "
            "envoyproxy/ratelimit, real redis-server on loopback.",
            "",
            f"G1: quota {g1['quota']} per {unit}, offered {g1['offered_per_window']} per "
            f"{unit} through three Envoys (three control-plane replicas): upstream hits per "
            f"window **{', '.join(str(n) for n in g1['hits_per_window'])}** "
            f"(statuses {g1['statuses']}).",
            "",
            f"G2: {result['g2']['rate']:,} req/s open loop, {result['g2']['duration_s']:g} s "
            f"per run, {len(g2['p50_ratios'])} rounds (order alternating):",
            "",
            *_table(["integration", "p50 µs", "p99 µs", "p99.9 µs", "errors"], rows),
            "",
            f"Ratio global/pod (median of per-round ratios): p50 **{g2['p50_ratio']:.3f}**, "
            f"p99 **{g2['p99_ratio']:.3f}** (per round: p50 "
            f"{', '.join(f'{r:.3f}' for r in g2['p50_ratios'])}; p99 "
            f"{', '.join(f'{r:.3f}' for r in g2['p99_ratios'])}).",
            "",
            f"Ratio fleet/pod: p50 **{g2['fleet_p50_ratio']:.3f}**, p99 "
            f"**{g2['fleet_p99_ratio']:.3f}** (per round: p50 "
            f"{', '.join(f'{r:.3f}' for r in g2['fleet_p50_ratios'])}; p99 "
            f"{', '.join(f'{r:.3f}' for r in g2['fleet_p99_ratios'])}): fleet is Envoy's "
            "local bucket with a divided size, nothing more in the request path.",
            "",
            f"CPU per 1,000 req/s during the global runs: envoyproxy/ratelimit "
            f"**{cpu['ratelimit_cores'] * 100:.1f} %** of a core, redis-server "
            f"**{cpu['redis_cores'] * 100:.1f} %**; Envoy's counters {g2['envoy']}.",
            "",
        ]
    )


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    rounds, duration = (1, 2.0) if args.quick else (4, 4.0)
    with tempfile.TemporaryDirectory(prefix="bench-ratelimit-") as tmp:
        redis = RedisServer(Path(tmp))
        redis.start()
        service = RateLimitService(redis.url, Path(tmp))
        service.start()
        try:
            g2 = await _latency(Path(tmp), service, redis, rounds, duration)
            g1 = await _exactness(Path(tmp), service, args.quick)
        finally:
            service.stop()
            redis.remove()
    return {"g1": g1, "g2": g2}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ratelimit", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="per-second windows, one round")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    result = asyncio.run(_main(args))
    for run in result["g2"]["runs"]:
        run.pop("distribution", None)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(markdown(result))


if __name__ == "__main__":
    main()
