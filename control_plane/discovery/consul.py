"""Consul: register this control plane, and discover ``discovery: consul`` upstreams.

Speaks Consul's HTTP API with aiohttp: py-consul's asyncio client builds its connector
with arguments aiohttp 3.10+ deprecates (``verify_ssl``, ``ssl_context``), which turns
into errors under warnings-as-errors, and the three endpoints used here are small:

* ``PUT /v1/agent/service/register`` and ``PUT /v1/agent/service/deregister/:id``
  (https://developer.hashicorp.com/consul/api-docs/agent/service);
* ``GET /v1/health/service/:service?passing=true`` as a *blocking query*: ``index`` is the
  last ``X-Consul-Index`` seen and ``wait`` the longest hold; Consul answers when the
  result changes or the wait (plus up to wait/16 of jitter) runs out
  (https://developer.hashicorp.com/consul/api-docs/features/blocking).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp

__all__ = ["ConsulClient", "ConsulDiscovery", "ConsulError", "ServiceRegistration"]

log = logging.getLogger(__name__)

# Jitter from a private generator: the global `random` state stays untouched.
_JITTER = random.Random()  # noqa: S311 - jitter, not crypto

Endpoints = list[tuple[str, int]]
_NET_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)


class ConsulError(Exception):
    """Consul could not be reached or refused the request."""


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for suffix in ("ms", "s", "m", "h"):
        if duration.endswith(suffix):
            return float(duration[: -len(suffix)]) * units[suffix]
    return float(duration)


class ConsulClient:
    def __init__(
        self, host: str, port: int = 8500, *, scheme: str = "http", timeout_s: float = 10.0
    ) -> None:
        self.base_url = f"{scheme}://{host}:{port}"
        self.timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # created inside the running loop
            self._session = aiohttp.ClientSession()
        return self._session

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        timeout_s: float | None = None,
    ) -> tuple[Any, Mapping[str, str]]:
        url = self.base_url + path
        timeout = aiohttp.ClientTimeout(total=timeout_s or self.timeout_s)
        try:
            async with self._client().request(
                method, url, params=params, json=body, timeout=timeout
            ) as response:
                text = await response.text()
                if response.status != 200:
                    raise ConsulError(f"Consul {method} {path} answered {response.status}: {text}")
                payload = None
                if text and response.content_type == "application/json":
                    payload = await response.json()
                return payload, response.headers
        except _NET_ERRORS as exc:
            raise ConsulError(
                f"Consul {method} {path} failed: {type(exc).__name__}: {exc}"
            ) from exc

    async def register(self, definition: Mapping[str, Any]) -> None:
        await self._call("PUT", "/v1/agent/service/register", body=dict(definition))

    async def deregister(self, service_id: str) -> None:
        await self._call("PUT", f"/v1/agent/service/deregister/{quote(service_id, safe='')}")

    async def healthy_instances(
        self, service: str, *, index: int = 0, wait: str = "30s"
    ) -> tuple[int, list[dict[str, Any]]]:
        """``(X-Consul-Index, entries)`` of passing instances; blocks while ``index`` holds."""
        params = {"passing": "true"}
        if index > 0:
            params.update(index=str(index), wait=wait)
        payload, headers = await self._call(
            "GET",
            f"/v1/health/service/{quote(service, safe='')}",
            params=params,
            # Consul may hold the request for wait + wait/16 before answering.
            timeout_s=_seconds(wait) * 17 / 16 + self.timeout_s,
        )
        try:
            new_index = int(headers.get("X-Consul-Index", "0"))
        except ValueError:
            new_index = 0
        return new_index, payload if isinstance(payload, list) else []


def endpoints_of(entries: Sequence[Mapping[str, Any]]) -> Endpoints:
    """Sorted ``(address, port)`` pairs; the service address, else its node's."""
    out: set[tuple[str, int]] = set()
    for entry in entries:
        service = entry.get("Service") or {}
        node = entry.get("Node") or {}
        address = service.get("Address") or node.get("Address")
        port = service.get("Port")
        if isinstance(address, str) and address and isinstance(port, int) and port > 0:
            out.add((address, port))
    return sorted(out)


@dataclass(slots=True)
class ServiceRegistration:
    """This control plane as a Consul service with an HTTP check on ``/health/ready``."""

    client: ConsulClient
    service_id: str
    name: str
    port: int
    address: str
    version: str
    tags: Sequence[str] = ("integration-service", "control-plane")
    meta: Mapping[str, str] = field(default_factory=dict)
    check_interval: str = "10s"
    check_timeout: str = "5s"
    deregister_after: str = "1m"
    registered: bool = False

    def definition(self) -> dict[str, Any]:
        return {
            "ID": self.service_id,
            "Name": self.name,
            "Tags": list(self.tags),
            "Address": self.address,
            "Port": self.port,
            "Meta": {**self.meta, "version": self.version},
            "Check": {
                "Name": "integration-service readiness",
                "HTTP": f"http://{self.address}:{self.port}/health/ready",
                "Method": "GET",
                "Interval": self.check_interval,
                "Timeout": self.check_timeout,
                # An instance that died without deregistering disappears by itself.
                "DeregisterCriticalServiceAfter": self.deregister_after,
            },
        }

    async def register_until_done(self, backoff_max_s: float = 30.0) -> None:
        """Register, retrying with back-off while Consul is unreachable."""
        delay = 0.5
        while True:
            try:
                await self.client.register(self.definition())
                self.registered = True
                log.info("registered in Consul", extra={"service_id": self.service_id})
                return
            except ConsulError as exc:
                log.warning("Consul registration failed; retrying", extra={"error": str(exc)})
            await asyncio.sleep(delay)
            delay = min(delay * 2, backoff_max_s)

    async def deregister(self) -> None:
        if not self.registered:
            return
        try:
            await self.client.deregister(self.service_id)
            self.registered = False
            log.info("deregistered from Consul", extra={"service_id": self.service_id})
        except ConsulError as exc:
            log.warning("Consul deregistration failed", extra={"error": str(exc)})


class ConsulDiscovery:
    """One blocking-query watch per ``discovery: consul`` integration, feeding EDS."""

    def __init__(
        self,
        client: ConsulClient,
        set_endpoints: Callable[[str, Endpoints], None],
        *,
        wait: str = "30s",
        min_interval_s: float = 0.05,
        backoff_max_s: float = 10.0,
    ) -> None:
        self.client = client
        self.set_endpoints = set_endpoints
        self.wait = wait
        self.min_interval_s = min_interval_s
        self.backoff_max_s = backoff_max_s
        self.endpoints: dict[str, Endpoints] = {}
        self._watches: dict[str, tuple[str, asyncio.Task[None]]] = {}

    async def apply(self, view: Any) -> None:
        """Registry listener: start and stop watches as integrations come and go."""
        wanted = {
            item.id: item.upstream.consul_service or item.id
            for item in view.enabled()
            if item.upstream.discovery == "consul"
        }
        for ident, (service, task) in list(self._watches.items()):
            if wanted.get(ident) != service:
                task.cancel()
                del self._watches[ident]
                self.endpoints.pop(ident, None)
        for ident, service in wanted.items():
            if ident not in self._watches:
                task = asyncio.create_task(self._watch(ident, service), name=f"consul-{ident}")
                self._watches[ident] = (service, task)

    async def stop(self) -> None:
        tasks = [task for _, task in self._watches.values()]
        self._watches.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch(self, ident: str, service: str) -> None:
        index, backoff = 0, 0.5
        while True:
            started = asyncio.get_running_loop().time()
            try:
                new_index, entries = await self.client.healthy_instances(
                    service, index=index, wait=self.wait
                )
            except ConsulError as exc:
                log.warning(
                    "Consul health query failed",
                    extra={"id": ident, "service": service, "error": str(exc)},
                )
                await asyncio.sleep(backoff * _JITTER.uniform(0.5, 1.0))
                backoff = min(backoff * 2, self.backoff_max_s)
                continue
            backoff = 0.5
            endpoints = endpoints_of(entries)
            if self.endpoints.get(ident) != endpoints:
                self.endpoints[ident] = endpoints
                log.info("Consul endpoints changed", extra={"id": ident, "endpoints": endpoints})
                try:
                    self.set_endpoints(ident, endpoints)
                except Exception:  # the watch outlives a failed push; the next change retries
                    log.exception("applying Consul endpoints failed", extra={"id": ident})
            # Consul's rules: an index that goes backwards (a snapshot restore) means start
            # over, and an index must never be 0 or the query does not block.
            index = 0 if new_index < index else max(new_index, 1)
            # ...and a query that returns at once must not spin.
            elapsed = asyncio.get_running_loop().time() - started
            if elapsed < self.min_interval_s:
                await asyncio.sleep(self.min_interval_s - elapsed)


@dataclass(slots=True)
class ConsulRuntime:
    client: ConsulClient
    registration: ServiceRegistration
    discovery: ConsulDiscovery
