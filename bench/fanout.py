"""The delta ADS protocol's own cost of one change, per stream, as the registry grows.

``python -m bench.fanout [--tree DIR] [--n 10 1000 5000] [--streams 200] [--json FILE]``:
in one process (a child process per tree, so ``--tree`` measures another checkout, e.g. an
exported base commit, beside this one), ``--streams`` delta streams
(:class:`~control_plane.xds.stream_state.DeltaState`, no gRPC) subscribe the way Envoy
does (wildcard CDS and LDS, the EDS names of every cluster, RDS and SDS by name), receive
and ACK the first snapshot of N benchmark integrations (the control plane's own
``ConfigPipeline``), then:

* *change*: one integration moves to another upstream port; every stream computes its
  responses (CDS, then the re-sent EDS), which are then ACKed;
* *idle wake-up*: the streams are woken for every type with the snapshot they hold (what a
  stream does for the types a change did not touch, and for each ACK).

Times are CPU time per stream (median of 5 repeats), the part of a push to many nodes
that grows with the registry; the gRPC transport's cost per message is measured with real
clients by ``bench.anchor``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["main", "measure"]

REPEATS = 5


def measure(n: int, streams: int) -> dict[str, Any]:
    from envoy.service.discovery.v3 import discovery_pb2

    from bench.registry_docs import document
    from control_plane.registry.loader import integration_from_document
    from control_plane.registry.view import RegistryView
    from control_plane.xds.cache import SnapshotCache
    from control_plane.xds.pipeline import ConfigPipeline
    from control_plane.xds.resources import ADS_ORDER, ENDPOINT, WILDCARD_TYPES
    from control_plane.xds.snapshot import Snapshot
    from control_plane.xds.status import XdsStatus
    from control_plane.xds.stream_state import DeltaState

    def view(port: int, generation: int) -> RegistryView:
        items = {}
        for i in range(n):
            doc = document(f"int-{i:05d}", port if i == 0 else 8080, 20000 + i)
            items[doc["id"]] = integration_from_document(doc, source="declared")
        return RegistryView(items=items, generation=generation)

    async def snapshots() -> list[Snapshot]:
        out = []
        with tempfile.TemporaryDirectory(prefix="bench-fanout-") as data:
            pipeline = ConfigPipeline(SnapshotCache(), data_dir=Path(data), environ={})
            for generation in range(1, REPEATS + 2):
                port = 8080 + generation % 2
                await pipeline.apply(view(port, generation))
                assert pipeline.cache.snapshot is not None
                out.append(pipeline.cache.snapshot)
        return out

    series = asyncio.run(snapshots())
    status = XdsStatus()
    nodes: list[tuple[DeltaState, dict[str, str]]] = []

    def ack(state: DeltaState, last: dict[str, str], responses: list[Any]) -> None:
        for response in responses:
            last[response.type_url] = response.nonce
        for type_url in {r.type_url for r in responses}:
            state.on_request(
                discovery_pb2.DeltaDiscoveryRequest(
                    type_url=type_url, response_nonce=last[type_url]
                )
            )

    for k in range(streams):
        state, last = DeltaState(f"node-{k}", status), dict[str, str]()
        for type_url in ADS_ORDER:
            names = [] if type_url in WILDCARD_TYPES else list(series[0].get(type_url))
            state.on_request(
                discovery_pb2.DeltaDiscoveryRequest(
                    type_url=type_url, resource_names_subscribe=names
                )
            )
        ack(state, last, state.responses(series[0], set(ADS_ORDER)))
        nodes.append((state, last))
    change, idle = [], []
    for snapshot in series[1:]:
        started = time.process_time()
        for state, last in nodes:
            ack(state, last, state.responses(snapshot, set(ADS_ORDER)))
        change.append((time.process_time() - started) / streams)
        started = time.process_time()
        for state, _ in nodes:
            assert state.responses(snapshot, set(ADS_ORDER)) == []
        idle.append((time.process_time() - started) / streams)
    endpoints = len(series[-1].get(ENDPOINT))
    return {
        "n": n,
        "streams": streams,
        "resources": sum(len(series[-1].get(t)) for t in ADS_ORDER),
        "endpoints": endpoints,
        "change_ms_per_stream": statistics.median(change) * 1000,
        "idle_wake_ms_per_stream": statistics.median(idle) * 1000,
        "repeats": REPEATS,
    }


def markdown(runs: dict[str, list[dict[str, Any]]]) -> str:
    trees = list(runs)
    lines = [
        "## xDS fan-out per stream (issue 20)",
        "",
        "`python -m bench.fanout` (method in its docstring): CPU per delta stream, median of "
        f"{REPEATS} changes, {runs[trees[0]][0]['streams']} streams, no gRPC (the transport's "
        "cost is `bench.anchor`'s).",
        "",
        "| tree | integrations | resources | one change, ms per stream "
        "| idle wake-up, ms per stream |",
        "|---|---:|---:|---:|---:|",
    ]
    for tree, rows in runs.items():
        for row in rows:
            lines.append(
                f"| {tree} | {row['n']:,} | {row['resources']:,} "
                f"| {row['change_ms_per_stream']:.3f} | {row['idle_wake_ms_per_stream']:.4f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__)
    p.add_argument("--tree", type=Path, action="append", help="a checkout to measure (repeatable)")
    p.add_argument("--n", type=int, nargs="+", default=[10, 1000, 5000])
    p.add_argument("--streams", type=int, default=200)
    p.add_argument("--json", type=Path)
    p.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure(*args.child)))
        return 0
    from bench.procs import run_in_trees  # not at the top: a child may run a base tree's bench

    per_tree = [["--child", str(n), str(args.streams)] for n in args.n]
    runs = run_in_trees(__file__, args.tree, per_tree)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))
    print(markdown(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
