"""The per-node xDS delivery status: what each node was sent, ACKed and NACKed, per type
and per resource, and the awaitable ACK primitive (:meth:`XdsStatus.wait_acked`).

Written by the ADS server, read by the management API, metrics and events
(``control_plane.xds.config_state`` derives what readiness and status report from it).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = [
    "AckListener",
    "AckOutcome",
    "Nack",
    "NackListener",
    "NodeStatus",
    "StreamType",
    "TypeState",
    "TypeStatus",
    "XdsStatus",
    "node_key",
    "refused_names",
]

_log = logging.getLogger(__name__)

StreamType = Literal["sotw", "delta"]
TypeState = Literal["idle", "pending", "acked", "nacked"]
AckOutcome = Literal["acked", "nacked", "disconnected", "timeout"]
"""How :meth:`XdsStatus.wait_acked` ended."""
AckListener = Callable[[str, str, str], None]
"""``(node_id, type_url, version)`` after a node ACKs a response."""
NackListener = Callable[[str, str, str, str], None]
"""``(node_id, type_url, rejected_version, error_message)`` after a node NACKs."""


def refused_names(names: Iterable[str], message: str) -> set[str]:
    """Which of ``names`` a NACK's ``error_detail`` refused: the ones it names, or all of
    them when it names none (see :meth:`XdsStatus.record_resources_nacked`)."""
    listed = list(names)
    named = {n for n in listed if re.search(rf"(?<![\w.-]){re.escape(n)}(?![\w.-])", message)}
    return named or set(listed)


def node_key(node_id: str, workload: str | None) -> str:
    """The key a node's status is kept under: its id, qualified by the workload its
    certificate proved in the shared topology."""
    return node_id if workload is None else f"{workload}/{node_id}"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


@dataclass(slots=True)
class Nack:
    """One rejection: the version Envoy refused and its ``error_detail``."""

    version: str
    nonce: str
    message: str
    code: int
    at: datetime


@dataclass(slots=True)
class TypeStatus:
    """What one node was sent for one type URL and what it answered."""

    type_url: str
    sent_version: str | None = None
    sent_nonce: str | None = None
    sent_at: datetime | None = None
    acked_version: str | None = None
    acked_at: datetime | None = None
    last_nack: Nack | None = None
    push_count: int = 0
    # Per resource, what the node runs and what it refused. A type-level ACK only says the
    # latest response was accepted; in delta xDS that response may carry other resources
    # than an earlier, rejected one, so per-resource truth is kept here.
    resources: dict[str, str] = field(default_factory=dict)  # name -> version it ACKed
    rejected: dict[str, Nack] = field(default_factory=dict)  # name -> refusal of a version

    def resource_state(self, name: str, version: str | None) -> TypeState:
        """``acked`` when the node runs ``version`` of ``name``; ``nacked`` when it refused
        that very version; ``pending`` otherwise (not answered yet, or not sent)."""
        if version is not None and self.resources.get(name) == version:
            return "acked"
        refused = self.rejected.get(name)
        if refused is not None and refused.version == version:
            return "nacked"
        return "pending"

    @property
    def state(self) -> TypeState:
        """``nacked`` if the latest response was rejected, ``pending`` until it is answered.

        After a NACK Envoy keeps running ``acked_version`` (the last config it accepted).
        """
        if self.sent_nonce is None:
            return "idle"
        if self.last_nack is not None and self.last_nack.nonce == self.sent_nonce:
            return "nacked"
        if self.acked_version == self.sent_version and self.acked_at is not None:
            return "acked"
        return "pending"

    def as_dict(self) -> dict[str, Any]:
        nack = self.last_nack
        return {
            "type_url": self.type_url,
            "state": self.state,
            "sent_version": self.sent_version,
            "sent_nonce": self.sent_nonce,
            "sent_at": _iso(self.sent_at),
            "acked_version": self.acked_version,
            "acked_at": _iso(self.acked_at),
            "push_count": self.push_count,
            "rejected": {
                name: {"version": n.version, "message": n.message, "at": _iso(n.at)}
                for name, n in sorted(self.rejected.items())
            },
            "last_nack": None
            if nack is None
            else {
                "version": nack.version,
                "nonce": nack.nonce,
                "message": nack.message,
                "code": nack.code,
                "at": _iso(nack.at),
            },
        }


@dataclass(slots=True)
class NodeStatus:
    """Delivery status of one Envoy node (``node.id``) across its ADS streams."""

    node_id: str
    stream_type: StreamType
    connected: bool = False
    # Shared topology: the node's workload and the certificate identity it proved. Its
    # status is then kept under "<workload>/<node id>" (``node_key``), so a node claiming
    # another workload's node id cannot overwrite that node's status.
    workload: str | None = None
    identity: str | None = None
    connected_at: datetime | None = None
    disconnected_at: datetime | None = None
    types: dict[str, TypeStatus] = field(default_factory=dict)

    def type(self, type_url: str) -> TypeStatus:
        """The status for ``type_url``, created on first use."""
        status = self.types.get(type_url)
        if status is None:
            status = self.types[type_url] = TypeStatus(type_url)
        return status

    def as_dict(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "workload": self.workload,
            "identity": self.identity,
            "stream_type": self.stream_type,
            "connected": self.connected,
            "connected_at": _iso(self.connected_at),
            "disconnected_at": _iso(self.disconnected_at),
            "types": {url: status.as_dict() for url, status in sorted(self.types.items())},
        }


class XdsStatus:
    """Registry of :class:`NodeStatus` written by the xDS server, read by everyone else.

    ``on_ack`` / ``on_nack`` are plain lists of synchronous callables; a listener that
    raises is logged and skipped so it cannot break an ADS stream.
    """

    def __init__(self, clock: Callable[[], datetime] = _utcnow) -> None:
        self._clock = clock
        self._nodes: dict[str, NodeStatus] = {}
        self._streams: dict[str, int] = {}
        self.on_ack: list[AckListener] = []
        self.on_nack: list[NackListener] = []
        # Swapped for a fresh one and set on every change, so every waiter wakes once per
        # change and none misses one (the SnapshotCache pattern).
        self._changed = asyncio.Event()

    async def wait_acked(
        self, node_id: str, type_url: str, version: str, timeout_s: float
    ) -> AckOutcome:
        """Wait, without polling, until ``node_id`` answers the response carrying
        ``version`` of ``type_url``.

        ``acked`` once it runs that version; ``nacked`` as soon as it rejects that version;
        ``disconnected`` at once when the node has no ADS stream (nothing can ACK: it gets
        the version when it connects); ``timeout`` otherwise.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            changed = self._changed
            outcome = self._ack_outcome(node_id, type_url, version)
            if outcome is not None:
                return outcome
            remaining = deadline - loop.time()
            if remaining <= 0:
                return "timeout"
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                return "timeout"

    def _ack_outcome(self, node_id: str, type_url: str, version: str) -> AckOutcome | None:
        node = self._nodes.get(node_id)
        if node is None or not node.connected:
            return "disconnected"
        status = node.types.get(type_url)
        if status is None:
            return None
        if status.state == "acked" and status.acked_version == version:
            return "acked"
        nack = status.last_nack
        if status.state == "nacked" and nack is not None and nack.version == version:
            return "nacked"
        return None

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def get(self, node_id: str) -> NodeStatus | None:
        return self._nodes.get(node_id)

    def forget_disconnected(self, older_than_s: float) -> int:
        """Drop nodes disconnected for longer than ``older_than_s`` (a fleet's pods come
        and go; their status must not grow without bound). Returns how many."""
        now = self._clock()
        gone = [
            key
            for key, node in self._nodes.items()
            if not node.connected
            and node.disconnected_at is not None
            and (now - node.disconnected_at).total_seconds() > older_than_s
        ]
        for key in gone:
            del self._nodes[key]
            self._streams.pop(key, None)
        if gone:
            self._notify()
        return len(gone)

    def nodes(self) -> list[NodeStatus]:
        return [self._nodes[node_id] for node_id in sorted(self._nodes)]

    def stream_opened(
        self,
        node_id: str,
        stream_type: StreamType,
        *,
        workload: str | None = None,
        identity: str | None = None,
    ) -> NodeStatus:
        node = self._nodes.get(node_id)
        if node is None:
            node = self._nodes[node_id] = NodeStatus(node_id, stream_type)
        node.stream_type = stream_type
        node.workload, node.identity = workload, identity
        node.connected = True
        node.connected_at = self._clock()
        self._streams[node_id] = self._streams.get(node_id, 0) + 1
        self._notify()
        return node

    def stream_closed(self, node_id: str) -> None:
        remaining = self._streams.get(node_id, 1) - 1
        self._streams[node_id] = remaining
        node = self._nodes.get(node_id)
        if node is not None and remaining <= 0:
            node.connected = False
            node.disconnected_at = self._clock()
        self._notify()

    def record_sent(self, node_id: str, type_url: str, version: str, nonce: str) -> None:
        status = self._node(node_id).type(type_url)
        status.sent_version, status.sent_nonce = version, nonce
        status.sent_at = self._clock()
        status.push_count += 1
        self._notify()

    def record_ack(self, node_id: str, type_url: str, version: str) -> None:
        status = self._node(node_id).type(type_url)
        status.acked_version, status.acked_at = version, self._clock()
        self._notify()
        for listener in list(self.on_ack):
            try:
                listener(node_id, type_url, version)
            except Exception:
                _log.exception("on_ack listener %r failed", listener)

    def record_nack(
        self, node_id: str, type_url: str, version: str, nonce: str, message: str, code: int
    ) -> None:
        status = self._node(node_id).type(type_url)
        status.last_nack = Nack(version, nonce, message, code, self._clock())
        self._notify()
        for listener in list(self.on_nack):
            try:
                listener(node_id, type_url, version, message)
            except Exception:
                _log.exception("on_nack listener %r failed", listener)

    def record_resources_acked(
        self,
        node_id: str,
        type_url: str,
        versions: Mapping[str, str],
        removed: Iterable[str] = (),
        *,
        complete: bool = False,
    ) -> None:
        """The node accepted ``versions`` (name -> version) and dropped ``removed``;
        ``complete``: ``versions`` is everything it now holds (a state-of-the-world ACK)."""
        status = self._node(node_id).type(type_url)
        if complete:
            status.resources = dict(versions)
        else:
            status.resources.update(versions)
        for name in versions:
            status.rejected.pop(name, None)
        for name in removed:
            status.resources.pop(name, None)
            status.rejected.pop(name, None)
        self._notify()

    def record_resources_nacked(
        self,
        node_id: str,
        type_url: str,
        versions: Mapping[str, str],
        nonce: str,
        message: str,
        code: int,
    ) -> None:
        """The node refused the response carrying ``versions``.

        Envoy applies the resources of one LDS/CDS update one by one and names each that
        failed in ``error_detail`` ("Error adding/updating listener(s) clash: ..."), so when
        the message names some of them, only those are refused and the others run; when it
        names none, the whole response is taken as refused.
        """
        status = self._node(node_id).type(type_url)
        now = self._clock()
        refused = refused_names(versions, message)
        for name, version in versions.items():
            if name not in refused:
                status.resources[name] = version
                status.rejected.pop(name, None)
            else:
                status.rejected[name] = Nack(version, nonce, message, code, now)
        self._notify()

    def _node(self, node_id: str) -> NodeStatus:
        node = self._nodes.get(node_id)
        if node is None:
            node = self._nodes[node_id] = NodeStatus(node_id, "sotw")
        return node
