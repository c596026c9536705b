"""B5 translation scale: 100 / 1,000 / 10,000 integrations.

Two views:

* in a fresh child process per size (``python -m bench.scale --n N --out FILE``): the pure
  translator and the snapshot, timed separately (median of repeats) — documents to model,
  ``translate``, ``Snapshot.build`` (which hashes every resource and runs the reference
  check) — plus the snapshot's serialized size and the memory the model and snapshot hold;
  then the control plane's ``ConfigPipeline`` on the same registry: its first snapshot
  (every integration translated alone, then merged) and one changed integration after it
  (translated, copied, hashed and walked alone; median of several changes);
* the real control plane (``integration-service run --no-envoy``) started on an
  integrations file of N entries: time from the process's start until a delta ADS client
  (as an Envoy subscribes: wildcard CDS) has received the first snapshot, and its RSS then.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.procs import pin, rss_bytes
from bench.registry_docs import document, integrations_yaml
from tests.support.service import ServiceProcess

# Never created: the translator only writes the path into the listeners.
ACCESS_LOGS = str(Path(tempfile.gettempdir()) / "bench-access-logs")

__all__ = ["main", "service_footprint"]


def _vm_rss() -> int:
    return rss_bytes(int(Path("/proc/self/stat").read_text().split()[0]))


def measure(n: int, repeats: int) -> dict[str, Any]:
    from control_plane.registry.loader import integration_from_document
    from control_plane.xds.resources import ADS_ORDER
    from control_plane.xds.snapshot import Snapshot
    from control_plane.xds.translate import TranslateOptions, translate

    documents = [document(f"int-{i:05d}", 8080, 20000 + i) for i in range(n)]
    options = TranslateOptions(access_log_dir=ACCESS_LOGS)
    # warm the imports and descriptor pools on a tiny registry
    Snapshot.build(
        translate(
            [integration_from_document(documents[0], source="declared")], {}, options
        ).resources
    )
    gc.collect()
    base_rss = _vm_rss()
    started = time.perf_counter()
    items = [integration_from_document(d, source="declared") for d in documents]
    model_s = time.perf_counter() - started
    translate_s: list[float] = []
    snapshot_s: list[float] = []
    snapshot = None
    for _ in range(repeats):
        snapshot = None
        gc.collect()
        started = time.perf_counter()
        result = translate(items, {}, options)
        middle = time.perf_counter()
        snapshot = Snapshot.build(result.resources)
        done = time.perf_counter()
        translate_s.append(middle - started)
        snapshot_s.append(done - middle)
        del result
    assert snapshot is not None
    sizes = {
        t.rsplit(".", 1)[-1]: sum(m.ByteSize() for m in snapshot.get(t).values()) for t in ADS_ORDER
    }
    gc.collect()
    held_rss = _vm_rss() - base_rss
    resources = sum(len(snapshot.get(t)) for t in ADS_ORDER)
    # A fixed reference in the same process (issue 20): protobuf parsing and serializing
    # every resource of the snapshot once, so translation cost compares across days.
    messages = [m for t in ADS_ORDER for m in snapshot.get(t).values()]
    reference_s: list[float] = []
    for _ in range(repeats):
        started = time.perf_counter()
        for message in messages:
            type(message).FromString(message.SerializeToString())
        reference_s.append(time.perf_counter() - started)
    del messages
    del snapshot
    cold_s, change_s = _pipeline(items)
    return {
        "n": n,
        "model_s": model_s,
        "translate_s": statistics.median(translate_s),
        "snapshot_s": statistics.median(snapshot_s),
        "total_s": statistics.median(a + b for a, b in zip(translate_s, snapshot_s, strict=True)),
        "pipeline_cold_s": cold_s,
        "change_s": statistics.median(change_s),
        "change_max_s": max(change_s),
        "reference_s": statistics.median(reference_s),
        "snapshot_bytes": sum(sizes.values()),
        "snapshot_bytes_by_type": sizes,
        "resources": resources,
        "held_rss_bytes": held_rss,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def _pipeline(items: list[Any], changes: int = 9) -> tuple[float, list[float]]:
    """The control plane's pipeline: first snapshot, then ``changes`` one-integration edits."""
    from control_plane.registry.loader import integration_from_document
    from control_plane.registry.view import RegistryView
    from control_plane.xds.cache import SnapshotCache
    from control_plane.xds.pipeline import ConfigPipeline

    async def run() -> tuple[float, list[float]]:
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as data:
            pipeline = ConfigPipeline(SnapshotCache(), data_dir=Path(data), environ={})
            view = {i.id: i for i in items}
            gc.collect()
            started = time.perf_counter()
            await pipeline.apply(RegistryView(items=view, generation=1))
            cold = time.perf_counter() - started
            target = items[len(items) // 2]
            assert target.listen_port is not None
            samples: list[float] = []
            for k in range(changes):
                doc = document(target.id, 9000 + k % 2, target.listen_port)
                view = {**view, target.id: integration_from_document(doc, source="declared")}
                started = time.perf_counter()
                await pipeline.apply(RegistryView(items=view, generation=2 + k))
                samples.append(time.perf_counter() - started)
                assert pipeline.state.translated == 1 and pipeline.state.error is None
            return cold, samples

    return asyncio.run(run())


async def _first_served(port: int, node_id: str, deadline: float) -> int:
    """Wait for the control plane's ADS server and receive its first CDS response, as an
    Envoy would (one delta stream, wildcard CDS): the snapshot is then *served*. Returns
    the number of clusters in it."""
    import grpc
    from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

    from control_plane.xds.resources import CLUSTER

    request = discovery_pb2.DeltaDiscoveryRequest(type_url=CLUSTER)
    request.node.id = node_id

    async def requests() -> Any:
        yield request
        await asyncio.sleep(deadline)  # keep the stream open until the answer is read

    # Envoy takes responses of any size; gRPC's client default is 4 MiB (10,000 clusters
    # are about 8 MB). Reconnect every 50 ms while the server is not yet listening (gRPC's
    # default backoff grows to seconds, which would be measured as the server's).
    options = [
        ("grpc.max_receive_message_length", -1),
        ("grpc.initial_reconnect_backoff_ms", 50),
        ("grpc.min_reconnect_backoff_ms", 50),
        ("grpc.max_reconnect_backoff_ms", 50),
    ]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        call = stub.DeltaAggregatedResources(requests(), wait_for_ready=True, timeout=deadline)
        async for response in call:
            call.cancel()
            return len(response.resources)
    raise RuntimeError("the ADS stream ended without a response")


async def service_footprint(
    n: int, workdir: Path, cpu: int | None, deadline_s: float = 180.0
) -> dict[str, Any]:
    """Start the real control plane on N declared integrations; time until a delta xDS
    client has received its first snapshot (CDS), and RSS then."""
    docs = [document(f"int-{i:05d}", 8080, 20000 + i) for i in range(n)]
    service = ServiceProcess(
        workdir, integrations_yaml(docs), env={"LOG_LEVEL": "INFO", "LOG_FORMAT": "json"}
    )
    started = time.monotonic()
    service.start()
    assert service.process is not None
    pin(service.process.pid, cpu)
    try:
        served = asyncio.ensure_future(_first_served(service.xds_port, "e2e-node", deadline_s))
        while not served.done():
            if service.process.poll() is not None:
                served.cancel()
                raise RuntimeError(f"control plane exited:\n{service.log()[-3000:]}")
            if time.monotonic() - started > deadline_s:
                served.cancel()
                raise TimeoutError(f"no snapshot after {deadline_s}s with {n} integrations")
            await asyncio.wait([served], timeout=0.05)
        elapsed = time.monotonic() - started
        clusters = served.result()
        if clusters < n:
            raise RuntimeError(f"first snapshot served {clusters} clusters, expected {n}")
        await asyncio.sleep(0.5)  # let the start-up garbage settle
        return {"n": n, "first_snapshot_s": elapsed, "rss_bytes": rss_bytes(service.process.pid)}
    finally:
        await asyncio.to_thread(service.stop)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    args.out.write_text(json.dumps(measure(args.n, args.repeats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
