"""The snapshot cache: the snapshot every node should run, and watches on it.

Middle of the three xDS layers: the server reads snapshots through :class:`SnapshotSource`
and reports what each node was sent, ACKed and NACKed into
:class:`~control_plane.xds.status.XdsStatus`, which the cache carries for everyone else.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from control_plane.xds.snapshot import Snapshot
from control_plane.xds.status import XdsStatus

__all__ = ["SnapshotCache", "SnapshotSource"]


class SnapshotSource(Protocol):
    """What the ADS server needs from a cache; a dict-backed class satisfies it in tests."""

    @property
    def status(self) -> XdsStatus: ...

    def snapshot_for(self, node_id: str) -> Snapshot | None:
        """The snapshot ``node_id`` should run now, or None while there is none."""
        ...

    async def wait_for(self, node_id: str, after: str | None) -> Snapshot:
        """Return once ``node_id``'s snapshot exists and its version differs from ``after``."""
        ...


class SnapshotCache:
    """The current snapshot (one for all nodes, optionally overridden per node) plus watches.

    Watchers await a version change; each :meth:`set_snapshot` swaps in a fresh
    :class:`asyncio.Event` and sets the old one, so no waiter misses an update. Like all
    asyncio objects it belongs to one event loop: call :meth:`set_snapshot` from that loop
    (``loop.call_soon_threadsafe`` from another thread).
    """

    def __init__(self, status: XdsStatus | None = None) -> None:
        self.status = XdsStatus() if status is None else status
        self._default: Snapshot | None = None
        self._per_node: dict[str, Snapshot] = {}
        self._changed = asyncio.Event()

    @property
    def snapshot(self) -> Snapshot | None:
        """The snapshot served to every node without an override."""
        return self._default

    def set_snapshot(self, snapshot: Snapshot, node_id: str | None = None) -> None:
        """Serve ``snapshot`` to every node (or only ``node_id``) after checking it.

        Raises :class:`~control_plane.xds.snapshot.InconsistentSnapshot`: an incomplete
        snapshot is never served (the previous one stays).
        """
        snapshot.check()
        if node_id is None:
            self._default = snapshot
        else:
            self._per_node[node_id] = snapshot
        self._notify()

    def clear_node(self, node_id: str) -> None:
        """Drop a per-node override; the node falls back to the shared snapshot."""
        if self._per_node.pop(node_id, None) is not None:
            self._notify()

    def snapshot_for(self, node_id: str) -> Snapshot | None:
        return self._per_node.get(node_id, self._default)

    async def wait_for(self, node_id: str, after: str | None) -> Snapshot:
        while True:
            changed = self._changed
            snapshot = self.snapshot_for(node_id)
            if snapshot is not None and snapshot.version != after:
                return snapshot
            await changed.wait()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
