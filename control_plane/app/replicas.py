"""Wiring of the replica sync: how this process hears what other replicas commit.

* PostgreSQL (with or without Redis): the store's :class:`ChangeListener` LISTENs for the
  ``NOTIFY`` every write commits, and :class:`RegistrySync` re-reads the store (one
  refresh per burst, one after every reconnection, one every ``registry_resync_interval``
  seconds as a safety net). PostgreSQL alone is enough to stay in step.
* Redis: ``integration.*`` events wake the same :class:`RegistrySync` (both may run; a
  refresh is idempotent).
* Neither (SQLite without Redis): one replica, nothing to sync.

``/health`` reports which of them runs and whether it is connected (its ``sync`` check).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from control_plane.api.health import SYNC_CHECK
from control_plane.events.bus import EventBus
from control_plane.events.consumers import RegistrySync
from control_plane.events.redis_bus import RedisBus
from control_plane.keys import REGISTRY, SETTINGS, STORE
from control_plane.store.notify import ChangeFeed, ChangeListener

__all__ = ["CHANGE_LISTENER", "install_replica_sync"]

CHANGE_LISTENER = web.AppKey("change_listener", ChangeListener)


def install_replica_sync(app: web.Application, bus: EventBus) -> RegistrySync | None:
    """The sync for ``app`` (None when there is nothing to sync); call after the core keys
    are set. The caller starts and stops the returned :class:`RegistrySync`."""
    store = app[STORE]
    redis = bus if isinstance(bus, RedisBus) else None
    if not isinstance(store, ChangeFeed) and redis is None:
        return None  # /health says "none"
    sync = RegistrySync(app[REGISTRY].refresh, app[SETTINGS].registry_resync_interval)
    if redis is not None:
        sync.attach(redis)
        redis.on_connected.append(sync.request)
    listener = None
    if isinstance(store, ChangeFeed):
        listener = store.watch_changes(sync.peer_changed, sync.request)
        app[CHANGE_LISTENER] = listener
        app.cleanup_ctx.append(_listener_ctx)

    async def check(app: web.Application) -> dict[str, object]:
        common = {"resync_interval_s": sync.interval_s, "refreshes": sync.refreshes}
        if listener is None:
            assert redis is not None
            return {"ok": redis.connected, "mode": "redis", **common}
        out: dict[str, object] = {
            "ok": listener.connected,
            "mode": "postgres-notify",
            "listener": listener.state(),
            **common,
        }
        if redis is not None:
            out["redis"] = {"connected": redis.connected}
        return out

    app[SYNC_CHECK] = check
    return sync


async def _listener_ctx(app: web.Application) -> AsyncIterator[None]:
    """Listen once the store is open and the registry loaded; stop before they close."""
    listener = app[CHANGE_LISTENER]
    await listener.start()
    yield
    await listener.stop()
