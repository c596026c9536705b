"""Simulated Envoys for the fleet benchmark: N delta ADS clients in one process.

    python -m bench.fleet_clients --target 127.0.0.1:PORT --ca ca.crt --certs-dir DIR \\
        --count 1000 --workloads 10 [--first 0] [--server-name localhost]

Client ``i`` (``first <= i < first + count``) presents workload ``w{i % workloads}``'s
client certificate (``DIR/w{k}.crt``, ``DIR/w{k}.key``) on its own gRPC channel (its own
TCP + TLS connection, as every Envoy has: no shared subchannel pool), with node id
``{prefix}-{i}``. The control plane knows the node by the certificate, not by that label.

Each client subscribes the way Envoy does on one delta ADS stream
(https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol):

1. CDS wildcard, with the node on the first message only;
2. on every CDS response, EDS for the ``ClusterLoadAssignment`` names its EDS clusters use
   and SDS for the secrets they name (subscribe new names, unsubscribe dropped ones), then
   the CDS ACK;
3. once every cluster is warm (all those EDS and SDS names received), LDS wildcard, as
   Envoy's init manager asks for listeners only after the clusters;
4. on every LDS response, RDS for the route tables its HTTP connection managers name and
   SDS for its secrets, then the LDS ACK;
5. every response is ACKed (``response_nonce``, no ``error_detail``): never a NACK.

The names come from :func:`control_plane.xds.resources.references`, the same walk the
server's consistency check uses.

Output, JSON lines on stdout (``CLOCK_MONOTONIC`` seconds, comparable across processes):
first ``READY {...}``, then ``{"e": "cold", "c": i, "t": ..}`` when client ``i`` has ACKed
every type it needs from cold, then after that one ``{"e": "ack", "c": i, "t": ..,
"type": "CDS", "v": {name: version}, "rm": [..], "b": bytes}`` per ACKed response (``t`` is when the
ACK was written), ``{"e": "error", ..}`` if a stream fails (the client reconnects after
1 s, at most 3 times, sending ``initial_resource_versions`` like Envoy), and a final
``{"e": "bye", "rss": .., "cpu": ..}`` on SIGTERM. Bounded: the process exits after
``--limit-s`` seconds, or when its parent dies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.service.discovery.v3 import discovery_pb2

from control_plane.xds.resources import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ROUTE,
    SECRET,
    references,
)

__all__ = ["SHORT", "ClientSpec", "FleetClient", "channel_options", "main"]

SHORT = {CLUSTER: "CDS", ENDPOINT: "EDS", LISTENER: "LDS", ROUTE: "RDS", SECRET: "SDS"}
_ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
_RECONNECTS = 3
_DECODERS: dict[str, Any] = {CLUSTER: cluster_pb2.Cluster, LISTENER: listener_pb2.Listener}

Emit = Callable[[dict[str, Any]], None]


def channel_options(server_name: str | None) -> list[tuple[str, Any]]:
    options: list[tuple[str, Any]] = [
        # One connection per client, as each Envoy has its own: grpc core otherwise shares
        # a subchannel (one TCP connection) among channels with equal target and arguments.
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ]
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return options


@dataclass(frozen=True, slots=True)
class ClientSpec:
    index: int
    workload: str
    node_id: str


@dataclass(slots=True)
class _Held:
    """What one client holds of one type: versions by name, and (CDS/LDS) what each names."""

    versions: dict[str, str] = field(default_factory=dict)
    names: dict[str, dict[str, frozenset[str]]] = field(default_factory=dict)
    subscribed: set[str] = field(default_factory=set)  # EDS/RDS/SDS names asked for
    requested: bool = False
    answered: bool = False


class _Names:
    """What a cluster or listener names (EDS/RDS/SDS), walked once per distinct resource.

    Many clients of one workload receive the same resource (same name, type and version,
    which is a content hash): the walk is done for the first and shared, so the simulated
    fleet spends its CPU on the wire protocol, not on repeating the same walk N times.
    """

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str, str], dict[str, frozenset[str]]] = {}

    def of(self, type_url: str, item: Any) -> dict[str, frozenset[str]]:
        key = (type_url, item.name, item.version)
        found = self._seen.get(key)
        if found is None:
            message = _DECODERS[type_url].FromString(item.resource.value)
            found = references({type_url: {item.name: message}}).by_type()
            self._seen[key] = found
        return found


class FleetClient:
    """One simulated Envoy on one delta ADS stream."""

    def __init__(
        self,
        spec: ClientSpec,
        channel: grpc.aio.Channel,
        emit: Emit,
        node_cluster: str,
        names: _Names,
    ) -> None:
        self.spec = spec
        self.channel = channel
        self.emit = emit
        self.names = names
        self.node = base_pb2.Node(id=spec.node_id, cluster=node_cluster)
        self.held = {t: _Held() for t in SHORT}
        self.cold_at: float | None = None
        self.responses = 0
        self.bytes = 0  # serialized responses received (gRPC framing not counted)

    async def run(self) -> None:
        for attempt in range(_RECONNECTS + 1):
            try:
                await self._stream(reconnect=attempt > 0)
                reason = "stream ended by the server"
            except grpc.aio.AioRpcError as error:
                reason = f"{error.code().name}: {error.details()}"
            self.emit({"e": "error", "c": self.spec.index, "t": time.monotonic(), "msg": reason})
            await asyncio.sleep(1.0)

    async def _stream(self, *, reconnect: bool) -> None:
        call = self.channel.stream_stream(
            _ADS,
            request_serializer=discovery_pb2.DeltaDiscoveryRequest.SerializeToString,
            response_deserializer=discovery_pb2.DeltaDiscoveryResponse.FromString,
        )()  # type: ignore[call-arg]  # grpc.aio: no iterator, requests go through write()
        for held in self.held.values():
            held.requested = False
        await self._request(call, CLUSTER, node=True, initial=reconnect)
        if reconnect:  # the same subscriptions again, naming what is held
            for type_url in (ENDPOINT, LISTENER, ROUTE, SECRET):
                held = self.held[type_url]
                if type_url == LISTENER and held.answered:
                    await self._request(call, type_url, initial=True)
                elif held.subscribed:
                    subscribe = sorted(held.subscribed)
                    await self._request(call, type_url, subscribe=subscribe, initial=True)
        async for response in call:
            await self._on_response(call, response)

    async def _request(
        self,
        call: Any,
        type_url: str,
        *,
        subscribe: Sequence[str] = (),
        unsubscribe: Sequence[str] = (),
        node: bool = False,
        initial: bool = False,
    ) -> None:
        held = self.held[type_url]
        request = discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url,
            resource_names_subscribe=list(subscribe),
            resource_names_unsubscribe=list(unsubscribe),
            node=self.node if node else None,
        )
        if initial:  # after a reconnect Envoy names what it holds, so only changes come
            request.initial_resource_versions.update(held.versions)
        held.requested = True
        await call.write(request)

    async def _on_response(self, call: Any, response: Any) -> None:
        type_url = response.type_url
        held = self.held.get(type_url)
        if held is None:
            return
        self.responses += 1
        size = response.ByteSize()
        self.bytes += size
        walks = type_url in _DECODERS
        changed: dict[str, str] = {}
        for item in response.resources:
            held.versions[item.name] = item.version
            changed[item.name] = item.version
            if walks:
                held.names[item.name] = self.names.of(type_url, item)
        for name in response.removed_resources:
            held.versions.pop(name, None)
            held.names.pop(name, None)
        held.answered = True
        needs = self._needs()
        if walks:
            # Envoy asks for what the new clusters/listeners name before it ACKs them.
            await self._follow(call, needs)
        await call.write(
            discovery_pb2.DeltaDiscoveryRequest(type_url=type_url, response_nonce=response.nonce)
        )
        now = time.monotonic()
        if self.cold_at is None:
            clusters_warm = self._warm(CLUSTER, needs)
            if clusters_warm and not self.held[LISTENER].requested:
                await self._request(call, LISTENER)
            if clusters_warm and self._warm(LISTENER, needs):
                self.cold_at = now
                counts = {SHORT[t]: len(h.versions) for t, h in self.held.items()}
                event = {"e": "cold", "c": self.spec.index, "t": now, "n": counts, "b": self.bytes}
                self.emit(event)
            return
        self.emit(
            {
                "e": "ack",
                "c": self.spec.index,
                "t": now,
                "type": SHORT[type_url],
                "v": changed,
                "rm": list(response.removed_resources),
                "b": size,
            }
        )

    def _needs(self) -> dict[str, set[str]]:
        """EDS/RDS/SDS names the held clusters and listeners reference, by type."""
        needs: dict[str, set[str]] = {ENDPOINT: set(), ROUTE: set(), SECRET: set()}
        for type_url in _DECODERS:
            for named in self.held[type_url].names.values():
                for dependent, names in named.items():
                    needs[dependent] |= names
        return needs

    async def _follow(self, call: Any, needs: dict[str, set[str]]) -> None:
        for dependent, names in needs.items():
            held = self.held[dependent]
            new = sorted(names - held.subscribed)
            gone = sorted(held.subscribed - names)
            if not new and not gone:
                continue
            held.subscribed = set(names)
            for name in gone:
                held.versions.pop(name, None)
            await self._request(call, dependent, subscribe=new, unsubscribe=gone)

    def _warm(self, type_url: str, needs: dict[str, set[str]]) -> bool:
        """The type answered, and everything its resources name (EDS/SDS, RDS/SDS) arrived.

        (SDS names are not split by who names them: a cluster's secret missing also keeps
        the listeners cold, which only makes "cold" stricter.)"""
        if not self.held[type_url].answered:
            return False
        deps = (ENDPOINT, SECRET) if type_url == CLUSTER else (ROUTE, SECRET)
        return all(needs[d] <= self.held[d].versions.keys() for d in deps)


class _Output:
    """JSON lines to stdout, written in batches (each event carries its own time)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def emit(self, event: dict[str, Any]) -> None:
        self.lines.append(json.dumps(event, separators=(",", ":")))

    def flush(self) -> None:
        if self.lines:
            sys.stdout.write("\n".join(self.lines) + "\n")
            sys.stdout.flush()
            self.lines.clear()

    async def pump(self, every_s: float = 0.02) -> None:
        while True:
            self.flush()
            await asyncio.sleep(every_s)


def _credentials(args: argparse.Namespace, workload: str) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=Path(args.ca).read_bytes(),
        private_key=(Path(args.certs_dir) / f"{workload}.key").read_bytes(),
        certificate_chain=(Path(args.certs_dir) / f"{workload}.crt").read_bytes(),
    )


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def _orphaned(parent: int) -> None:
    """Returns once the parent is gone (the orchestrator died without stopping us)."""
    while True:
        await asyncio.sleep(0.5)
        if os.getppid() != parent:
            return


async def _main(args: argparse.Namespace) -> None:
    out = _Output()
    workloads = [f"w{k}" for k in range(args.workloads)]
    credentials = {w: _credentials(args, w) for w in workloads if not args.plaintext}
    options = channel_options(args.server_name)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    clients: list[FleetClient] = []
    names = _Names()
    for index in range(args.first, args.first + args.count):
        spec = ClientSpec(index, workloads[index % len(workloads)], f"{args.prefix}-{index}")
        if args.plaintext:
            channel = grpc.aio.insecure_channel(args.target, options=options)
        else:
            channel = grpc.aio.secure_channel(args.target, credentials[spec.workload], options)
        clients.append(FleetClient(spec, channel, out.emit, args.node_cluster, names))
    started = time.monotonic()
    print("READY " + json.dumps({"pid": os.getpid(), "t": started, "count": len(clients)}))
    sys.stdout.flush()
    # All at once by default (a fleet reconnecting to a restarted control plane), or
    # staggered over --spread-s.
    slots = [started + args.spread_s * i / max(1, len(clients)) for i in range(len(clients))]
    tasks = [asyncio.create_task(_later(c, at)) for c, at in zip(clients, slots, strict=True)]
    helpers = [asyncio.create_task(out.pump()), asyncio.create_task(_orphaned(os.getppid()))]
    ended = asyncio.create_task(stop.wait())
    await asyncio.wait([ended, helpers[1]], timeout=args.limit_s, return_when="FIRST_COMPLETED")
    for task in [*tasks, *helpers, ended]:
        task.cancel()
    await asyncio.gather(*tasks, *helpers, ended, return_exceptions=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.emit(
        {
            "e": "bye",
            "t": time.monotonic(),
            "rss": _rss_bytes(),
            "cpu": usage.ru_utime + usage.ru_stime,
            "responses": sum(c.responses for c in clients),
            "bytes": sum(c.bytes for c in clients),
            "cold": sum(1 for c in clients if c.cold_at is not None),
        }
    )
    out.flush()
    for client in clients:
        with contextlib.suppress(Exception):
            await client.channel.close(grace=None)


async def _later(client: FleetClient, at: float) -> None:
    delay = at - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    await client.run()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fleet_clients", description=__doc__)
    p.add_argument("--target", required=True, help="HOST:PORT of the xDS server")
    p.add_argument("--ca", help="PEM of the CA that signed the server certificate")
    p.add_argument("--certs-dir", help="holds w{k}.crt and w{k}.key per workload")
    p.add_argument("--count", type=int, required=True, help="clients in this process")
    p.add_argument("--first", type=int, default=0, help="index of this process's first client")
    p.add_argument("--workloads", type=int, default=10, help="workloads w0..w{K-1}")
    p.add_argument("--server-name", default="localhost", help="a DNS SAN of the server cert")
    p.add_argument("--prefix", default="fleet", help="node id label prefix")
    p.add_argument("--node-cluster", default="fleet")
    p.add_argument("--spread-s", type=float, default=0.0, help="stagger the connects over S s")
    p.add_argument("--limit-s", type=float, default=900.0, help="exit after S seconds")
    p.add_argument("--plaintext", action="store_true", help="no TLS (per-pod server)")
    args = p.parse_args(argv)
    if not args.plaintext and not (args.ca and args.certs_dir):
        p.error("--ca and --certs-dir are required unless --plaintext")
    asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
