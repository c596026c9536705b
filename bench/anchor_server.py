"""The two snapshots of the go-control-plane comparison, and our ADS server serving them.

``write_dumps(n, dir)`` translates a registry of ``n`` benchmark integrations (the control
plane's own ``ConfigPipeline``), and the same registry after one change (integration
``int-00000`` moves to another upstream port: its cluster changes), and writes each
snapshot as JSON: ``{"version", "resources": [{"type_url", "name", "version", "value"}]}``
with ``value`` the serialized resource in base64. Both servers load these files, so they
serve the same bytes.

``python -m bench.anchor_server --dump A --next B``: the product's ADS server
(``control_plane.xds.server.serve`` over ``SnapshotCache``, the per-pod topology: plaintext
on loopback, one snapshot for every node) serving dump A; each SIGHUP swaps to the other
dump (``set_snapshot``, which checks it, as the service does). Prints ``READY {json}`` and
``SWAPPED {json}`` lines like ``bench/gocp``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from google.protobuf.message import Message

from bench.registry_docs import document
from control_plane.registry.loader import integration_from_document
from control_plane.registry.view import RegistryView
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.pipeline import ConfigPipeline
from control_plane.xds.resources import ADS_ORDER, CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET
from control_plane.xds.server import serve
from control_plane.xds.snapshot import Snapshot

__all__ = ["CHANGED", "load_dump", "main", "write_dumps"]

CHANGED = "int-00000"  # the integration whose cluster the change moves


def _dump(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "version": snapshot.version,
        "resources": [
            {
                "type_url": type_url,
                "name": name,
                "version": snapshot.versions[type_url][name],
                "value": base64.b64encode(message.SerializeToString()).decode(),
            }
            for type_url in ADS_ORDER
            for name, message in sorted(snapshot.get(type_url).items())
        ],
    }


async def _snapshots(n: int) -> tuple[Snapshot, Snapshot]:
    def view(port_of_first: int, generation: int) -> RegistryView:
        items = {}
        for i in range(n):
            upstream = port_of_first if i == 0 else 8080
            doc = document(f"int-{i:05d}", upstream, 20000 + i)
            items[doc["id"]] = integration_from_document(doc, source="declared")
        return RegistryView(items=items, generation=generation)

    with tempfile.TemporaryDirectory(prefix="bench-anchor-") as data:
        pipeline = ConfigPipeline(SnapshotCache(), data_dir=Path(data), environ={})
        await pipeline.apply(view(8080, 1))
        before = pipeline.cache.snapshot
        await pipeline.apply(view(8081, 2))
        after = pipeline.cache.snapshot
    assert before is not None and after is not None
    return before, after


async def write_dumps(n: int, directory: Path) -> tuple[Path, Path]:
    before, after = await _snapshots(n)
    paths = directory / f"snapshot-{n}-a.json", directory / f"snapshot-{n}-b.json"
    for path, snapshot in zip(paths, (before, after), strict=True):
        path.write_text(json.dumps(_dump(snapshot)))
    return paths


def _message_types() -> dict[str, type[Message]]:
    from envoy.config.cluster.v3 import cluster_pb2
    from envoy.config.endpoint.v3 import endpoint_pb2
    from envoy.config.listener.v3 import listener_pb2
    from envoy.config.route.v3 import route_pb2
    from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

    return {
        CLUSTER: cluster_pb2.Cluster,
        ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
        LISTENER: listener_pb2.Listener,
        ROUTE: route_pb2.RouteConfiguration,
        SECRET: secret_pb2.Secret,
    }


def load_dump(path: Path) -> Snapshot:
    """The dump as a checked snapshot; its versions must come out as dumped."""
    types = _message_types()
    raw = json.loads(path.read_text())
    resources: dict[str, dict[str, Message]] = {t: {} for t in ADS_ORDER}
    versions: dict[str, dict[str, str]] = {t: {} for t in ADS_ORDER}
    for item in raw["resources"]:
        message = types[item["type_url"]].FromString(base64.b64decode(item["value"]))
        resources[item["type_url"]][item["name"]] = message
        versions[item["type_url"]][item["name"]] = item["version"]
    snapshot = Snapshot.build(resources, versions=versions)
    if snapshot.version != raw["version"]:
        raise ValueError(f"{path}: version {snapshot.version} != dumped {raw['version']}")
    return snapshot


def _say(tag: str, **fields: Any) -> None:
    print(f"{tag} {json.dumps({**fields, 't': time.monotonic()})}", flush=True)


async def _serve(dump: Path, following: Path, port: int) -> None:
    snapshots = [load_dump(dump), load_dump(following)]
    cache = SnapshotCache()
    cache.set_snapshot(snapshots[0])
    server, bound = await serve(cache, "127.0.0.1", port)
    stop = asyncio.Event()
    current = 0

    def swap() -> None:
        nonlocal current
        started = time.monotonic()
        current = 1 - current
        cache.set_snapshot(snapshots[current])
        _say("SWAPPED", set_s=time.monotonic() - started)

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, swap)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    count = sum(len(s.get(t)) for s in snapshots[:1] for t in ADS_ORDER)
    _say("READY", pid=os.getpid(), port=bound, resources=count)
    try:
        await stop.wait()
    finally:
        await server.stop(grace=0.5)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.anchor_server", description=__doc__)
    p.add_argument("--dump", type=Path, required=True)
    p.add_argument("--next", type=Path, required=True)
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args(argv)
    asyncio.run(_serve(args.dump, args.next, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
