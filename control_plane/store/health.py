"""The store's reachability, for ``/health``, the ``integration_service_store_up`` metric
and its alert — never for readiness.

Readiness of a pod means "this pod's data path runs the current config"; a database outage
does not change what Envoy serves (reads are answered from memory, writes answer 503), so
it must not pull every application pod out of its Service. It is reported and alerted on.
"""

from __future__ import annotations

import asyncio
import logging
import time

from control_plane.store.protocol import RegistryStore

__all__ = ["StoreHealth"]

log = logging.getLogger(__name__)


class StoreHealth:
    def __init__(self, store: RegistryStore, *, timeout_s: float = 2.0) -> None:
        self.store = store
        self.timeout_s = timeout_s
        self.up: bool | None = None  # None until the first check
        self.detail: str | None = None
        self.checked_at: float | None = None

    async def check(self) -> dict[str, object]:
        """Ping now; remember and return the outcome."""
        try:
            await asyncio.wait_for(self.store.ping(), timeout=self.timeout_s)
        except Exception as exc:  # any failure means "not reachable"
            if self.up is not False:
                log.warning("the registry store is unreachable", extra={"error": str(exc)})
            self.up, self.detail = False, str(exc) or type(exc).__name__
        else:
            if self.up is False:
                log.info("the registry store is reachable again")
            self.up, self.detail = True, None
        self.checked_at = time.monotonic()
        return {"ok": True} if self.up else {"ok": False, "detail": self.detail}

    async def watch(self, interval_s: float) -> None:
        """Check every ``interval_s`` until cancelled (the metric reads the last result)."""
        while True:
            await self.check()
            await asyncio.sleep(interval_s)
