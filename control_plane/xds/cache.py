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

    def snapshot_for(self, node_id: str, workload: str | None = None) -> Snapshot | None:
        """The snapshot ``node_id`` should run now, or None while there is none.

        ``workload``: the node's authenticated workload (shared topology); then only that
        workload's snapshot is ever returned, whatever the node id."""
        ...

    async def wait_for(
        self, node_id: str, after: str | None, workload: str | None = None
    ) -> Snapshot:
        """Return once the node's snapshot exists and its version differs from ``after``."""
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
        # Shared topology: one snapshot per workload (a subset of the default one).
        self._per_workload: dict[str, Snapshot] = {}
        self._changed = asyncio.Event()
        # One event per workload: a change wakes only the streams of the workloads whose
        # snapshot it changed (a fleet has many streams, a change affects few).
        self._workload_changed: dict[str, asyncio.Event] = {}

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

    def set_workload_snapshots(self, snapshots: dict[str, Snapshot]) -> None:
        """Serve each workload its snapshot; a workload left out gets none (its nodes wait).

        Watchers wake only when some workload's version changed."""
        for snapshot in snapshots.values():
            snapshot.check()
        before = {name: s.version for name, s in self._per_workload.items()}
        after = {name: s.version for name, s in snapshots.items()}
        self._per_workload = dict(snapshots)
        for name in set(before) | set(after):
            if before.get(name) != after.get(name):
                event = self._workload_changed.pop(name, None)
                if event is not None:
                    event.set()

    def workload_snapshot(self, workload: str) -> Snapshot | None:
        return self._per_workload.get(workload)

    def snapshot_for(self, node_id: str, workload: str | None = None) -> Snapshot | None:
        if workload is not None:
            return self._per_workload.get(workload)
        return self._per_node.get(node_id, self._default)

    async def wait_for(
        self, node_id: str, after: str | None, workload: str | None = None
    ) -> Snapshot:
        while workload is not None:
            changed = self._workload_changed.setdefault(workload, asyncio.Event())
            snapshot = self._per_workload.get(workload)
            if snapshot is not None and snapshot.version != after:
                return snapshot
            await changed.wait()
        while True:
            changed = self._changed
            snapshot = self.snapshot_for(node_id, workload)
            if snapshot is not None and snapshot.version != after:
                return snapshot
            await changed.wait()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
