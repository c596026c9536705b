"""The per-stream ADS protocol state: what one stream has sent, and what its ACKs/NACKs say.

The gRPC server (:mod:`control_plane.xds.server`) owns the stream's plumbing -- reading
requests, waiting for snapshot changes, emitting responses. It hands every request to
:meth:`StreamState.on_request` and asks :meth:`StreamState.responses` what to send once a
wake-up's requests and snapshot changes are applied. That protocol state is plain
synchronous code, kept here, one class per stream kind: :class:`SotwState` (state of the
world) and :class:`DeltaState` (incremental). Both emit responses in ADS order (CDS, EDS,
LDS, RDS, SDS), so a snapshot change reaches Envoy in the sequence the xDS protocol asks
for.
https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2  # type: ignore[import-untyped]

from control_plane.xds.resources import ADS_ORDER, CLUSTER, ENDPOINT, WILDCARD_TYPES, eds_names
from control_plane.xds.snapshot import Snapshot, interned
from control_plane.xds.status import XdsStatus, refused_names

__all__ = ["DeltaState", "SotwState", "StreamState"]


def _pack(type_url: str, resource: Any) -> Any:
    return any_pb2.Any(type_url=type_url, value=resource.SerializeToString(deterministic=True))


# Delta ``Resource`` entries by the identity of the snapshot message they pack. Snapshot
# messages are frozen copies, shared by every stream (and by later snapshots that reuse
# them), so a change pushed to N streams serializes each changed resource once instead of N
# times; the entry holds the message, so its id is not reused while cached. Building and
# packing the entry was about a third of the server's CPU per change pushed to 1,000
# streams (issue 20).
_RESOURCES: dict[int, tuple[Any, str, str, Any]] = {}
_RESOURCES_MAX = 50_000


def _resource(type_url: str, name: str, version: str, message: Any) -> Any:
    hit = _RESOURCES.get(id(message))
    if hit is not None and hit[0] is message and hit[1] == name and hit[2] == version:
        return hit[3]
    made = discovery_pb2.Resource(name=name, version=version, resource=_pack(type_url, message))
    if len(_RESOURCES) >= _RESOURCES_MAX:
        del _RESOURCES[next(iter(_RESOURCES))]  # the oldest
    _RESOURCES[id(message)] = (message, name, version, made)
    return made


def _nack_text(request: Any) -> tuple[bool, str, int]:
    # A request that answers a nonce and carries error_detail is a NACK; Envoy puts the
    # rejection reason in error_detail.message and the last *accepted* version in
    # version_info, so the rejected version comes from our own nonce bookkeeping.
    if not request.HasField("error_detail"):
        return False, "", 0
    return True, str(request.error_detail.message), int(request.error_detail.code)


def _nonces() -> Iterator[str]:
    # A nonce names one response so an ACK/NACK can be matched to it. The random stream
    # prefix keeps a reconnecting node's new nonces from matching its old stream's records.
    prefix = secrets.token_hex(4)
    return (f"{prefix}-{n}" for n in itertools.count(1))


class StreamState(Protocol):
    """What the server asks of either stream kind."""

    def on_request(self, request: Any) -> set[str]: ...
    def responses(self, snapshot: Snapshot, dirty: set[str]) -> list[Any]: ...
    def subscribed(self) -> set[str]: ...


@dataclass(slots=True)
class _SotwType:
    names: frozenset[str] | None  # None: wildcard (every resource of the type)
    nonce: str | None = None
    sent_version: str = ""
    sent_key: tuple[str, frozenset[str] | None] | None = None
    nacked_key: tuple[str, frozenset[str] | None] | None = None
    sent_resources: dict[str, str] = field(default_factory=dict)  # name -> version


_T = TypeVar("_T")


class _StreamBase(Generic[_T]):
    """What both stream kinds keep: the node, its status, per-type state and nonces."""

    def __init__(self, node_id: str, status: XdsStatus) -> None:
        self.node_id, self.status = node_id, status
        self.types: dict[str, _T] = {}
        self._nonces = _nonces()

    def subscribed(self) -> set[str]:
        return set(self.types)

    def _due(self, dirty: set[str]) -> Iterator[tuple[str, _T]]:
        # Subscribed dirty types in ADS order. Lazy on purpose: a type added to *dirty*
        # while the caller handles an earlier one (EDS after CDS) is still yielded.
        for type_url in ADS_ORDER:
            state = self.types.get(type_url)
            if state is not None and type_url in dirty:
                yield type_url, state


class SotwState(_StreamBase[_SotwType]):
    """State of the world: every response carries the full set for the subscription."""

    @staticmethod
    def _names(type_url: str, resource_names: Any) -> frozenset[str] | None:
        # CDS/LDS are wildcard when they name nothing; "*" asks for everything explicitly.
        names = frozenset(resource_names)
        if "*" in names or (not names and type_url in WILDCARD_TYPES):
            return None
        return interned(names)

    def on_request(self, request: Any) -> set[str]:
        type_url = request.type_url
        names = self._names(type_url, request.resource_names)
        state = self.types.get(type_url)
        if state is None or not request.response_nonce:
            # First request for the type on this stream (also after a reconnect, when
            # version_info holds what Envoy already runs): always answer it, Envoy's init
            # manager waits for a first response.
            self.types[type_url] = _SotwType(names)
            return {type_url}
        if state.nonce is None or request.response_nonce != state.nonce:
            # A stale nonce answers a response that has been superseded; the protocol says
            # to ignore it (its ACK/NACK and names are outdated).
            return set()
        nack, message, code = _nack_text(request)
        if nack:
            # Per resource: what this response changed is what was refused.
            held = self.status.get(self.node_id)
            acked = held.type(type_url).resources if held is not None else {}
            changed = {n: v for n, v in state.sent_resources.items() if acked.get(n) != v}
            self.status.record_resources_nacked(
                self.node_id, type_url, changed, state.nonce, message, code
            )
            self.status.record_nack(
                self.node_id, type_url, state.sent_version, state.nonce, message, code
            )
            # Remember what was refused: the same content is not sent again on this stream,
            # only a different version (or a different subscription) is. No push loop.
            state.nacked_key = state.sent_key
        else:
            self.status.record_resources_acked(
                self.node_id, type_url, state.sent_resources, complete=True
            )
            self.status.record_ack(self.node_id, type_url, request.version_info)
        state.names = names
        return {type_url}

    def responses(self, snapshot: Snapshot, dirty: set[str]) -> list[Any]:
        out = []
        for type_url, state in self._due(dirty):
            version = snapshot.version_for(type_url, state.names)
            key = (version, state.names)
            if key in (state.sent_key, state.nacked_key):
                continue
            available = snapshot.get(type_url)
            names = sorted(available if state.names is None else state.names & set(available))
            nonce = next(self._nonces)
            out.append(
                discovery_pb2.DiscoveryResponse(
                    version_info=version,
                    type_url=type_url,
                    nonce=nonce,
                    resources=[_pack(type_url, available[name]) for name in names],
                )
            )
            state.nonce, state.sent_version, state.sent_key = nonce, version, key
            versions = snapshot.versions.get(type_url, {})
            state.sent_resources = {name: versions.get(name, version) for name in names}
            self.status.record_sent(self.node_id, type_url, version, nonce)
            if type_url == CLUSTER and ENDPOINT in self.types:
                # An updated EDS cluster warms until it receives its ClusterLoadAssignment
                # again, even an unchanged one (else it waits out initial_fetch_timeout):
                # follow every CDS push with EDS. go-control-plane#245, envoy#31535.
                self.types[ENDPOINT].sent_key = None
                dirty.add(ENDPOINT)
        return out


@dataclass(slots=True)
class _Pending:
    version: str
    sent: dict[str, str]
    before: dict[str, str | None]
    removed: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _DeltaType:
    wildcard: bool = False
    names: set[str] = field(default_factory=set)
    client: dict[str, str] = field(default_factory=dict)  # what the client holds
    nacked: dict[str, str] = field(default_factory=dict)  # refused name -> version
    pending: dict[str, _Pending] = field(default_factory=dict)  # by nonce
    answered: bool = False
    # The snapshot's version of the subscription when ``client`` was last made equal to
    # it (nothing refused): while it still is, there is nothing to compare or send. Reset
    # by anything that changes ``client`` or the subscription other than a response.
    synced: str | None = None
    synced_map: Mapping[str, str] | None = None  # the snapshot's versions then, for its type
    frozen: frozenset[str] | None = None  # ``names``, frozen once per subscription change

    def subscription(self, limit: int | None = None) -> frozenset[str] | set[str] | None:
        """The names subscribed to (None: the wildcard), the same frozen object until they
        change; the live set, not frozen, when they outnumber ``limit`` (the type's
        resources and some: names beyond the snapshot that a node may send in any number
        are not worth freezing or remembering, per request, at its bidding)."""
        if self.wildcard:
            return None
        if self.frozen is None:
            if limit is not None and len(self.names) > limit:
                return self.names
            self.frozen = interned(frozenset(self.names))
        return self.frozen


class DeltaState(_StreamBase[_DeltaType]):
    """Incremental xDS: send only what changed, and ``removed_resources`` for deletions."""

    def on_request(self, request: Any) -> set[str]:
        type_url = request.type_url
        state = self.types.get(type_url)
        subscribe = set(request.resource_names_subscribe)
        resubscribed = state is None or bool(subscribe or request.resource_names_unsubscribe)
        if state is None:
            state = self.types[type_url] = _DeltaType()
            # Legacy wildcard: a first CDS/LDS request naming nothing means "everything".
            state.wildcard = not subscribe and type_url in WILDCARD_TYPES
            # After a reconnect Envoy lists what it already has, so only differences go out.
            state.client.update(request.initial_resource_versions)
            if request.initial_resource_versions:
                self.status.record_resources_acked(
                    self.node_id, type_url, dict(request.initial_resource_versions)
                )
        if "*" in subscribe:
            state.wildcard = True
            subscribe.discard("*")
        state.names |= subscribe
        for name in request.resource_names_unsubscribe:
            if name == "*":
                state.wildcard = False
            else:
                state.names.discard(name)
        if resubscribed:
            state.synced, state.frozen = None, None
            if not state.wildcard:  # the client drops whatever it is no longer subscribed to
                for name in set(state.client) - state.names:
                    del state.client[name]
                    state.nacked.pop(name, None)
        pending = state.pending.pop(request.response_nonce, None)
        if pending is not None:
            nack, message, code = _nack_text(request)
            if nack:
                self._nacked(type_url, state, pending, request.response_nonce, message, code)
            else:
                self.status.record_resources_acked(
                    self.node_id, type_url, pending.sent, pending.removed
                )
                self.status.record_ack(self.node_id, type_url, pending.version)
        return {type_url}

    def _nacked(
        self,
        type_url: str,
        state: _DeltaType,
        pending: _Pending,
        nonce: str,
        message: str,
        code: int,
    ) -> None:
        self.status.record_resources_nacked(
            self.node_id, type_url, pending.sent, nonce, message, code
        )
        self.status.record_nack(self.node_id, type_url, pending.version, nonce, message, code)
        # The client keeps its previous version of each refused resource (it applied the
        # others of the response); remember the refused versions so they are not pushed
        # again until the snapshot holds a different version of them.
        refused = refused_names(pending.sent, message)
        state.synced = None
        for name, version in pending.sent.items():
            if name not in refused:
                continue
            state.nacked[name] = version
            if state.client.get(name) == version:
                before = pending.before[name]
                if before is None:
                    del state.client[name]
                else:
                    state.client[name] = before

    def responses(self, snapshot: Snapshot, dirty: set[str]) -> list[Any]:
        out = []
        for type_url, state in self._due(dirty):
            subscription = state.subscription(snapshot.subscription_limit(type_url))
            version = snapshot.version_for(type_url, subscription)
            if state.answered and state.synced == version:
                continue  # the client holds exactly this already (a digest of it)
            available = snapshot.versions.get(type_url, {})
            updates, removed, withdrawn = self._differences(state, snapshot, type_url)
            if not updates and not removed and not withdrawn and state.answered:
                self._synced(state, version, available)
                continue
            # Always answer the first request, even with nothing, so Envoy's init
            # manager does not sit out initial_fetch_timeout.
            state.answered = True
            nonce = next(self._nonces)
            state.pending[nonce] = _Pending(
                version,
                dict(updates),
                {name: state.client.get(name) for name in updates},
                [*removed, *withdrawn],
            )
            state.client.update(updates)  # optimistic: reverted if the client NACKs
            for name in removed:
                del state.client[name]
            self._synced(state, version, available)
            resources = snapshot.get(type_url)
            out.append(
                discovery_pb2.DeltaDiscoveryResponse(
                    system_version_info=version,
                    type_url=type_url,
                    nonce=nonce,
                    removed_resources=removed,
                    resources=[
                        _resource(type_url, name, ver, resources[name])
                        for name, ver in updates.items()
                    ],
                )
            )
            self.status.record_sent(self.node_id, type_url, version, nonce)
            eds = self.types.get(ENDPOINT)
            if type_url == CLUSTER and eds is not None:
                # See SotwState.responses: re-send the endpoints of every updated EDS
                # cluster so its warming completes now rather than at initial_fetch_timeout.
                clusters = snapshot.get(CLUSTER)
                for name in updates:
                    for endpoint in eds_names(clusters[name]):
                        eds.client.pop(endpoint, None)
                eds.synced = None
                dirty.add(ENDPOINT)
        return out

    @staticmethod
    def _differences(
        state: _DeltaType, snapshot: Snapshot, type_url: str
    ) -> tuple[dict[str, str], list[str], list[str]]:
        """What the client lacks of the snapshot's resources of one type (name -> version,
        sorted), what it holds that left, and the refused names that left (forgotten)."""
        available = snapshot.versions.get(type_url, {})
        if state.answered and state.synced is not None and state.synced_map is not None:
            # The client held exactly the subscribed part of ``synced_map`` and refused
            # nothing: only what changed since then can differ.
            changes = snapshot.changes_since(type_url, state.synced_map)
            names = state.names if not state.wildcard else None
            updates = {
                name: available[name] for name in changes.changed if names is None or name in names
            }
            return updates, [name for name in changes.removed if name in state.client], []
        wanted = set(available) if state.wildcard else state.names & available.keys()
        updates = {
            name: available[name]
            for name in sorted(wanted)
            if available[name] not in (state.client.get(name), state.nacked.get(name))
        }
        removed = sorted(name for name in state.client if name not in available)
        # A refused resource that left the snapshot: the client never held it, so there
        # is nothing to remove, but the node still stands on the NACK. Answer anyway so
        # the client ACKs the current version instead of staying "nacked" for good.
        withdrawn = [name for name in state.nacked if name not in available]
        for name in withdrawn:
            del state.nacked[name]
        return updates, removed, withdrawn

    @staticmethod
    def _synced(state: _DeltaType, version: str, available: Mapping[str, str]) -> None:
        # The client now holds (optimistically) exactly the subscribed part of ``available``,
        # unless it refused something, which it keeps in its place.
        if state.nacked:
            state.synced, state.synced_map = None, None
        else:
            state.synced, state.synced_map = version, available
