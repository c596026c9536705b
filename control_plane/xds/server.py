"""The ADS gRPC server: state-of-the-world and incremental (delta) xDS over one stream.

Top of the three xDS layers. It knows the cache only through
:class:`~control_plane.xds.cache.SnapshotSource` and writes delivery status into
:class:`~control_plane.xds.cache.XdsStatus`.

Each stream runs one loop over a queue fed by two tasks: one reads client requests, one
waits for snapshot changes. Everything queued at a wake-up is applied first and the
responses are then emitted in ADS order (CDS, EDS, LDS, RDS, SDS), so a snapshot change
reaches Envoy in the sequence the xDS protocol asks for. The per-stream protocol state
(:class:`~control_plane.xds.stream_state.SotwState`,
:class:`~control_plane.xds.stream_state.DeltaState`) is plain synchronous code in
:mod:`control_plane.xds.stream_state`.
https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Protocol

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc

from control_plane.registry.workloads import Workload
from control_plane.xds.cache import SnapshotSource
from control_plane.xds.gate import Peer
from control_plane.xds.resources import ADS_ORDER
from control_plane.xds.snapshot import Snapshot
from control_plane.xds.status import StreamType, node_key
from control_plane.xds.stream_state import DeltaState, SotwState, StreamState

__all__ = ["AdsServicer", "Authenticator", "serve", "stop_server"]

_log = logging.getLogger(__name__)

# Envoy pings the xDS connection (bootstrap: HTTP/2 keepalive every 30 s). gRPC servers by
# default tolerate one ping per 5 min on an idle stream and answer more with GOAWAY
# ENHANCE_YOUR_CALM, which would drop the ADS stream every few minutes.
_SERVER_OPTIONS = [
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 0),
    ("grpc.keepalive_permit_without_calls", 1),
]


# How long a refused stream's first request is waited for before the refusal is sent.
_REFUSAL_READ_S = 5.0


class _End:
    """Queued by the reader when the client half-closes or the stream fails."""


class Authenticator(Protocol):
    """Who is behind a stream (the shared topology's :class:`~control_plane.xds.gate.TlsGate`)."""

    def identify(self, grpc_peer: str) -> tuple[Peer | None, Workload | None]: ...
    def refuse(self, reason: str, address: str, **detail: object) -> None: ...


class AdsServicer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    """``envoy.service.discovery.v3.AggregatedDiscoveryService`` backed by a snapshot source.

    With an ``authenticator`` (the shared topology) every stream must come from a peer it
    vouches for, and is served that peer's workload snapshot whatever node id it claims.
    """

    def __init__(self, source: SnapshotSource, authenticator: Authenticator | None = None) -> None:
        self._source = source
        self._auth = authenticator

    async def StreamAggregatedResources(
        self, request_iterator: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        # grpc.aio treats a handler as streaming only if it is an async generator function.
        async with contextlib.aclosing(self._stream(request_iterator, context, "sotw")) as s:
            async for response in s:
                yield response

    async def DeltaAggregatedResources(
        self, request_iterator: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        # grpc.aio treats a handler as streaming only if it is an async generator function.
        async with contextlib.aclosing(self._stream(request_iterator, context, "delta")) as s:
            async for response in s:
                yield response

    async def _stream(
        self,
        request_iterator: AsyncIterator[Any],
        context: grpc.aio.ServicerContext[Any, Any],
        stream_type: StreamType,
    ) -> AsyncGenerator[Any, None]:
        workload, identity = None, None
        if self._auth is not None:
            peer, found = self._auth.identify(context.peer())
            if found is None:
                reason = "not_through_gate" if peer is None else "unknown_identity"
                detail = {} if peer is None else {"identity": peer.identity}
                self._auth.refuse(reason, peer.address if peer else context.peer(), **detail)
                # Take the client's first request before refusing: a status sent while the
                # client is still writing reaches it as INTERNAL, not as the reason.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(anext(request_iterator), _REFUSAL_READ_S)
                await context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    "no workload for this connection's certificate",
                )
            assert peer is not None and found is not None
            workload, identity = found.name, peer.identity
        queue: asyncio.Queue[Any] = asyncio.Queue()
        tasks = [asyncio.create_task(self._read(request_iterator, queue))]
        state: StreamState | None = None
        node_id = ""
        snapshot: Snapshot | None = None
        try:
            while True:
                items = [await queue.get()]
                while not queue.empty():
                    items.append(queue.get_nowait())
                dirty: set[str] = set()
                for item in items:
                    if isinstance(item, _End):
                        return
                    if isinstance(item, Snapshot):
                        snapshot = item
                        dirty |= state.subscribed() if state is not None else set()
                        continue
                    if state is None:
                        # Envoy sends the node only on the first request
                        # (set_node_on_first_message_only in the bootstrap).
                        if not item.node.id:
                            await context.abort(
                                grpc.StatusCode.INVALID_ARGUMENT, "first request lacks node.id"
                            )
                        node_id = node_key(item.node.id, workload)
                        state = self._open(node_id, stream_type, workload, identity)
                        snapshot = self._source.snapshot_for(node_id, workload)
                        after = None if snapshot is None else snapshot.version
                        tasks.append(
                            asyncio.create_task(self._watch(node_id, after, queue, workload))
                        )
                    if item.type_url not in ADS_ORDER:
                        _log.debug("ignoring request for unserved type %s", item.type_url)
                        continue
                    dirty |= state.on_request(item)
                if state is not None and snapshot is not None:
                    for response in state.responses(snapshot, dirty):
                        yield response
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if state is not None:
                self._source.status.stream_closed(node_id)

    def _open(
        self,
        node_id: str,
        stream_type: StreamType,
        workload: str | None = None,
        identity: str | None = None,
    ) -> StreamState:
        self._source.status.stream_opened(
            node_id, stream_type, workload=workload, identity=identity
        )
        if stream_type == "delta":
            return DeltaState(node_id, self._source.status)
        return SotwState(node_id, self._source.status)

    @staticmethod
    async def _read(request_iterator: AsyncIterator[Any], queue: asyncio.Queue[Any]) -> None:
        try:
            async for request in request_iterator:
                queue.put_nowait(request)
        except Exception as error:  # the client went away: end the stream
            _log.debug("ADS stream read ended: %r", error)
        finally:
            queue.put_nowait(_End())

    async def _watch(
        self,
        node_id: str,
        after: str | None,
        queue: asyncio.Queue[Any],
        workload: str | None = None,
    ) -> None:
        while True:
            snapshot = await self._source.wait_for(node_id, after, workload)
            after = snapshot.version
            queue.put_nowait(snapshot)


async def serve(
    source: SnapshotSource,
    host: str = "127.0.0.1",
    port: int = 0,
    authenticator: Authenticator | None = None,
) -> tuple[grpc.aio.Server, int]:
    """Start an ADS server on ``host:port`` (0 picks a free port); returns it and the port.

    Stop it with ``await server.stop(grace)``.
    """
    server = grpc.aio.server(options=_SERVER_OPTIONS)
    servicer = AdsServicer(source, authenticator)
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(servicer, server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    bound = server.add_insecure_port(address)
    await server.start()
    return server, bound


async def stop_server(server: grpc.aio.Server, grace_s: float = 1.0, limit_s: float = 5.0) -> None:
    """Stop an ADS server, giving streams ``grace_s``; never wait past ``limit_s``.

    A shutdown must end: grpc.aio's stop has been seen to wait forever for its poller (in
    a test process whose earlier event loops used gRPC); past the limit it is abandoned
    and said so (the process is going away, or the test's loop is)."""
    try:
        await asyncio.wait_for(server.stop(grace_s), limit_s)
    except TimeoutError:
        _log.warning("xDS server did not stop within %.0f s; abandoned", limit_s)
