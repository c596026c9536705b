"""B4 (part 2): bytes and time the xDS server pushes for one change, delta vs SotW.

In one process: the real ADS server (``control_plane.xds.server.serve``) on loopback and a
minimal ADS client playing Envoy (subscribes like Envoy does, ACKs every response). The
client reads responses as raw bytes, so the byte counts are exactly the serialized
``DiscoveryResponse`` / ``DeltaDiscoveryResponse`` messages on the wire (gRPC adds 5 bytes of
framing per message, counted too). Time is from ``set_snapshot`` of the changed snapshot to
the last response of that change arriving at the client. The change: one integration of N
moves to another upstream port (its cluster and its route table change). The snapshots
come from the control plane's own ``ConfigPipeline``, so the change is also timed the way the
service pays for it: incrementally (only the changed integration is translated, copied,
hashed and walked); a from-scratch translation + checked snapshot is timed beside it.

Run as ``python -m bench.push --n 1000 --out FILE`` (a child process per size).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from bench.registry_docs import document
from control_plane.model import Integration
from control_plane.registry.loader import integration_from_document
from control_plane.registry.view import RegistryView
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.pipeline import ConfigPipeline
from control_plane.xds.resources import ADS_ORDER, CLUSTER, LISTENER
from control_plane.xds.server import serve
from control_plane.xds.snapshot import Snapshot
from control_plane.xds.translate import TranslateOptions, translate

# Never created: the translator only writes the path into the listeners.
ACCESS_LOGS = str(Path(tempfile.gettempdir()) / "bench-access-logs")

__all__ = ["build", "main", "measure"]

_ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/"
_GRPC_FRAME = 5


def integrations(n: int, upstream_port: int = 8080) -> list[Integration]:
    return [
        integration_from_document(
            document(f"int-{i:05d}", upstream_port, 20000 + i), source="declared"
        )
        for i in range(n)
    ]


def build(items: list[Integration]) -> tuple[Snapshot, float]:
    """Translate + checked snapshot, and the seconds it took (what every change costs)."""
    started = time.perf_counter()
    result = translate(items, {}, TranslateOptions(access_log_dir=ACCESS_LOGS))
    snapshot = Snapshot.build(result.resources)
    return snapshot, time.perf_counter() - started


class _Client:
    """Plays Envoy on one ADS stream: subscribes, ACKs, counts what arrives."""

    def __init__(self, channel: grpc.aio.Channel, delta: bool, snapshot: Snapshot) -> None:
        self.delta = delta
        method = "DeltaAggregatedResources" if delta else "StreamAggregatedResources"
        request_type = (
            discovery_pb2.DeltaDiscoveryRequest if delta else discovery_pb2.DiscoveryRequest
        )
        self.call = channel.stream_stream(
            _ADS + method,
            request_serializer=request_type.SerializeToString,
            response_deserializer=None,  # raw bytes: exact sizes, no parsing cost in the count
        )()  # type: ignore[call-arg]  # grpc.aio: no iterator, requests go through write()
        refs = snapshot.references().by_type()
        self.names = {t: sorted(refs.get(t, frozenset())) for t in ADS_ORDER}
        self.node = base_pb2.Node(id="bench-push", cluster="bench")
        self.messages: list[tuple[float, int, str]] = []

    async def subscribe(self) -> None:
        first = True
        for type_url in ADS_ORDER:
            wildcard = type_url in (CLUSTER, LISTENER)
            names = [] if wildcard else self.names[type_url]
            if not wildcard and not names:
                continue
            node = self.node if first else None
            first = False
            if self.delta:
                await self.call.write(
                    discovery_pb2.DeltaDiscoveryRequest(
                        node=node, type_url=type_url, resource_names_subscribe=names
                    )
                )
            else:
                await self.call.write(
                    discovery_pb2.DiscoveryRequest(
                        node=node, type_url=type_url, resource_names=names
                    )
                )

    async def pump(self) -> None:
        async for raw in self.call:
            now = time.perf_counter()
            if self.delta:
                d = discovery_pb2.DeltaDiscoveryResponse.FromString(raw)
                self.messages.append((now, len(raw) + _GRPC_FRAME, d.type_url))
                await self.call.write(
                    discovery_pb2.DeltaDiscoveryRequest(type_url=d.type_url, response_nonce=d.nonce)
                )
            else:
                s = discovery_pb2.DiscoveryResponse.FromString(raw)
                self.messages.append((now, len(raw) + _GRPC_FRAME, s.type_url))
                wildcard = s.type_url in (CLUSTER, LISTENER)
                await self.call.write(
                    discovery_pb2.DiscoveryRequest(
                        type_url=s.type_url,
                        version_info=s.version_info,
                        response_nonce=s.nonce,
                        resource_names=[] if wildcard else self.names[s.type_url],
                    )
                )


async def _quiet(client: _Client, quiet_s: float, limit_s: float) -> None:
    end = time.perf_counter() + limit_s
    seen = -1
    while time.perf_counter() < end:
        if len(client.messages) == seen and client.messages:
            return
        seen = len(client.messages)
        await asyncio.sleep(quiet_s)


async def measure(before: Snapshot, after: Snapshot, delta: bool) -> dict[str, Any]:
    cache = SnapshotCache()
    cache.set_snapshot(before)
    server, port = await serve(cache, "127.0.0.1", 0)
    options = [("grpc.max_receive_message_length", 512 * 1024 * 1024)]
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
            client = _Client(channel, delta, before)
            await client.subscribe()
            pump = asyncio.create_task(client.pump())
            await _quiet(client, 0.3, 60.0)
            initial = list(client.messages)
            client.messages.clear()
            started = time.perf_counter()
            cache.set_snapshot(after)  # checks the snapshot again, then wakes the streams
            queued = time.perf_counter()
            await _quiet(client, 0.3, 60.0)
            change = list(client.messages)
            client.call.cancel()
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, grpc.aio.AioRpcError):
                await pump
    finally:
        await server.stop(grace=0.5)
    return {
        "initial_bytes": sum(m[1] for m in initial),
        "initial_messages": len(initial),
        "change_bytes": sum(m[1] for m in change),
        "change_messages": len(change),
        "change_types": sorted({m[2].rsplit(".", 1)[-1] for m in change}),
        # set_snapshot (its consistency check) until the last response of the change arrived
        "change_time_ms": (max(m[0] for m in change) - started) * 1000 if change else None,
        "set_snapshot_ms": (queued - started) * 1000,
        # only the push: set_snapshot returned -> last response of the change received
        "push_ms": (max(m[0] for m in change) - queued) * 1000 if change else None,
    }


def _views(n: int) -> tuple[RegistryView, RegistryView]:
    items = {i.id: i for i in integrations(n)}
    target = integration_from_document(document("int-00000", 8081, 20000), source="declared")
    return RegistryView(items=items, generation=1), RegistryView(
        items={**items, target.id: target}, generation=2
    )


async def _main(n: int) -> dict[str, Any]:
    before_view, after_view = _views(n)
    _, full_s = build(list(after_view.items.values()))
    with tempfile.TemporaryDirectory(prefix="bench-push-") as data:
        pipeline = ConfigPipeline(SnapshotCache(), data_dir=Path(data), environ={})
        started = time.perf_counter()
        await pipeline.apply(before_view)
        cold_s = time.perf_counter() - started
        before = pipeline.cache.snapshot
        started = time.perf_counter()
        await pipeline.apply(after_view)
        change_s = time.perf_counter() - started
        after = pipeline.cache.snapshot
        assert before is not None and after is not None and pipeline.state.translated == 1
    out: dict[str, Any] = {
        "n": n,
        "translate_and_snapshot_s": full_s,
        "pipeline_cold_s": cold_s,
        "pipeline_change_s": change_s,
        "snapshot_resources": sum(len(before.get(t)) for t in ADS_ORDER),
    }
    for mode, delta in (("delta", True), ("sotw", False)):
        out[mode] = await measure(before, after, delta)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.push", description=__doc__)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    args.out.write_text(json.dumps(asyncio.run(_main(args.n))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
