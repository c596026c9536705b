"""Take over the Envoy a crashed control plane left running, instead of starting a second one.

When the control plane dies without :meth:`~.supervisor.EnvoySupervisor.stop` (SIGKILL, OOM
kill, crash) Envoy keeps serving its last good config, and the next
:meth:`~.supervisor.EnvoySupervisor.start` on the same data directory **adopts** it instead of
starting a second Envoy (which could not bind the same admin and listener ports anyway). This
module holds what adoption needs apart from supervision itself: the pid file written at each
spawn, the checks that a live process really is our Envoy, and the signals that end an Envoy
that is not our child.

``envoy.pid`` in the data directory has three lines: the pid, the process start time
(``/proc/<pid>/stat`` field 22, clock ticks since boot, so that a recycled pid is not mistaken
for our Envoy) and the SHA-256 of the bootstrap text. At start:

- the pid file must name a live process (not a zombie) with the recorded start time whose
  command line carries our ``--config-path`` and ``--admin-address-path``; anything else is
  a stale pid file and is ignored (a stranger's process is never signalled);
- if that Envoy runs a different bootstrap (hash in the pid file) or a different command
  line (another binary, concurrency, log level...), or its admin API does not answer within
  ``startup_timeout``, it is replaced: SIGTERM, SIGKILL after ``terminate_timeout``, then a
  fresh spawn;
- otherwise it is adopted (:attr:`~.supervisor.EnvoySupervisor.adopted` is True): not our
  child, so the supervisor polls its liveness every 0.5 s, respawns it when it dies
  (``restarts`` and ``on_restart`` as for a child), and ``stop`` stops it like a child.

The bootstrap embeds the xDS server's address and port, so adoption needs the restarted
control plane on the same xDS port: a fixed one (``INTEGRATION_SERVICE_XDS_PORT``, 18000 by
default), or with port 0 the previous run's port, which :mod:`.xds_port` remembers and binds
again while it is free (when it is taken, the bootstrap differs and the old Envoy is
replaced). A fixed admin port is not needed: the admin address is read from ``admin-address``.
Adoption needs Linux ``/proc`` (:mod:`.procfs`); elsewhere the supervisor always spawns.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from control_plane.sidecar.process import EnvoyStartError, await_admin, read_text
from control_plane.sidecar.procfs import cmdline, is_alive, process_start_time

__all__ = [
    "ADOPTED_POLL_S",
    "PidRecord",
    "adopt_previous",
    "terminate",
    "wait_gone",
    "write_pid_file",
]

logger = logging.getLogger(__name__)

#: Liveness poll of an adopted Envoy: not our child, so there is no exit status to wait on.
ADOPTED_POLL_S = 0.5
#: Liveness poll while an adopted Envoy is being signalled to exit.
_EXIT_POLL_S = 0.05
#: How long to wait for an adopted Envoy to vanish after SIGKILL.
_KILL_WAIT_S = 5.0


def _bootstrap_hash(bootstrap: str) -> str:
    return hashlib.sha256(bootstrap.encode("utf-8")).hexdigest()


def _has_option(argv: Sequence[str], option: str, value: str) -> bool:
    return any(a == option and b == value for a, b in itertools.pairwise(argv))


@dataclass(frozen=True, slots=True)
class PidRecord:
    """One line each in ``envoy.pid``: pid, start time, bootstrap SHA-256."""

    pid: int
    start_time: int
    bootstrap_sha256: str

    def dumps(self) -> str:
        return f"{self.pid}\n{self.start_time}\n{self.bootstrap_sha256}\n"

    @classmethod
    def loads(cls, text: str) -> PidRecord | None:
        lines = text.split()
        if len(lines) != 3 or not lines[0].isdigit() or not lines[1].isdigit():
            return None
        return cls(int(lines[0]), int(lines[1]), lines[2])

    def alive(self) -> bool:
        """True while the recorded process lives (same pid and start time, not a zombie)."""
        return is_alive(self.pid, self.start_time)


def write_pid_file(pid_path: Path, pid: int, bootstrap: str) -> None:
    """Record the Envoy just spawned; skipped when it already exited (nothing to adopt)."""
    start_time = process_start_time(pid)
    if start_time is None:
        return
    record = PidRecord(pid, start_time, _bootstrap_hash(bootstrap))
    tmp = pid_path.with_name(pid_path.name + ".tmp")
    tmp.write_text(record.dumps(), encoding="utf-8")
    tmp.replace(pid_path)  # atomic: a crash never leaves half a pid file


def _inspect_previous(
    pid_path: Path,
    *,
    bootstrap: str,
    command: Sequence[str],
    config_path: Path,
    admin_address_path: Path,
) -> tuple[PidRecord, str | None] | None:
    """The live Envoy a previous run left on this data dir, with why not to adopt it.

    *bootstrap* and *command* are what this run would start Envoy with. None when there is
    none: no or unreadable pid file, dead process, or a process that is not our Envoy (pid
    and start time coincide after a reboot, say) -- never touched. A stale pid file is
    removed.
    """
    text = read_text(pid_path)
    record = None if text is None else PidRecord.loads(text)
    if record is None or not record.alive():
        pid_path.unlink(missing_ok=True)
        return None
    argv = cmdline(record.pid)
    if (
        argv is None
        or not _has_option(argv, "--config-path", str(config_path))
        or not _has_option(argv, "--admin-address-path", str(admin_address_path))
    ):
        pid_path.unlink(missing_ok=True)
        return None
    if record.bootstrap_sha256 != _bootstrap_hash(bootstrap):
        return record, "bootstrap changed"
    if argv != list(command):
        return record, "command line changed"
    return record, None


async def wait_gone(record: PidRecord, *, interval: float, within_s: float | None = None) -> bool:
    """Poll until the adopted process is gone (True) or *within_s* passed (False)."""
    loop = asyncio.get_running_loop()
    deadline = None if within_s is None else loop.time() + within_s
    while record.alive():
        if deadline is not None and loop.time() >= deadline:
            return False
        await asyncio.sleep(interval)
    return True


def _signal(record: PidRecord, signum: signal.Signals) -> None:
    # Identity re-checked right before each signal: never signal a recycled pid.
    if record.alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signum)


async def terminate(record: PidRecord, terminate_timeout: float) -> None:
    """SIGTERM the adopted Envoy, SIGKILL after *terminate_timeout*, wait until gone."""
    try:
        _signal(record, signal.SIGTERM)
        if await wait_gone(record, interval=_EXIT_POLL_S, within_s=terminate_timeout):
            return
        logger.warning("envoy ignored SIGTERM; sending SIGKILL", extra={"pid": record.pid})
    finally:
        # Also on cancellation: leave no process behind.
        _signal(record, signal.SIGKILL)
    if not await wait_gone(record, interval=_EXIT_POLL_S, within_s=_KILL_WAIT_S):
        logger.error("envoy survived SIGKILL", extra={"pid": record.pid})


async def adopt_previous(
    pid_path: Path,
    *,
    bootstrap: str,
    command: Sequence[str],
    config_path: Path,
    admin_address_path: Path,
    log_path: Path,
    startup_timeout: float,
    terminate_timeout: float,
) -> tuple[PidRecord, str] | None:
    """The Envoy of a previous run with its admin URL, to adopt; None: replaced or none found.

    *bootstrap* and *command* are what this run would start Envoy with, *config_path* and
    *admin_address_path* where its command line points (see :func:`_inspect_previous`).
    """
    if not sys.platform.startswith("linux"):
        return None
    found = await asyncio.to_thread(
        _inspect_previous,
        pid_path,
        bootstrap=bootstrap,
        command=command,
        config_path=config_path,
        admin_address_path=admin_address_path,
    )
    if found is None:
        return None
    record, reason = found
    if reason is None:

        def exited() -> str | None:
            return None if record.alive() else "exited"

        try:
            url = await await_admin(admin_address_path, log_path, exited, within_s=startup_timeout)
        except EnvoyStartError as exc:
            reason = f"admin API not answering: {exc}"
        else:
            logger.info(
                "envoy adopted from a previous run", extra={"pid": record.pid, "admin": url}
            )
            return record, url
    logger.warning(
        "replacing the envoy of a previous run", extra={"pid": record.pid, "reason": reason}
    )
    await terminate(record, terminate_timeout)
    await asyncio.to_thread(pid_path.unlink, missing_ok=True)
    return None
