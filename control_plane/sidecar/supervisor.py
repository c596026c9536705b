"""Run Envoy as a supervised child process, and adopt it again after a control-plane crash.

:class:`EnvoySupervisor` writes the rendered bootstrap into a data directory, starts Envoy,
learns the admin address Envoy actually bound (admin port 0 is allowed), restarts Envoy with
exponential backoff whenever it dies, and stops it gracefully: drain listeners through the
admin API, then SIGTERM, then SIGKILL.

Files in the data directory:

- ``bootstrap.yaml``  -- the config Envoy runs with;
- ``envoy.log``       -- Envoy's stdout and stderr, appended across restarts;
- ``admin-address``   -- written by Envoy (``--admin-address-path``), e.g. ``127.0.0.1:41477``;
- ``envoy.pid``       -- written by the supervisor at each spawn, three lines: the pid, the
  process start time (``/proc/<pid>/stat`` field 22, clock ticks since boot, so that a
  recycled pid is not mistaken for our Envoy) and the SHA-256 of the bootstrap text;
- ``envoy.lock``      -- ``flock``-ed by the running supervisor: two supervisors on one data
  directory would fight over one Envoy, so the second :meth:`~EnvoySupervisor.start` fails.
  The kernel releases the lock when the supervisor's process dies, even by SIGKILL.

Envoy runs in its own session (process group), so a Ctrl-C aimed at the control plane does
not kill Envoy behind the supervisor's back; the supervisor's :meth:`~EnvoySupervisor.stop`
decides how Envoy ends. Envoy also runs with hot restart disabled: with hot restart on, Envoy
calls ``prctl(PR_SET_PDEATHSIG, SIGTERM)`` at startup (``HotRestartImpl``; measured with
Envoy 1.40) and so dies with its parent, the control plane. The supervisor never hot-restarts
(a restart is a fresh process), so it only loses that, plus the shared memory segment and
abstract sockets hot restart would create.

When the control plane dies without :meth:`~EnvoySupervisor.stop` (SIGKILL, OOM kill, crash)
Envoy keeps serving its last good config, and the next :meth:`~EnvoySupervisor.start` on the
same data directory **adopts** it instead of starting a second Envoy (which could not bind the
same admin and listener ports anyway):

- the pid file must name a live process (not a zombie) with the recorded start time whose
  command line carries our ``--config-path`` and ``--admin-address-path``; anything else is
  a stale pid file and is ignored (a stranger's process is never signalled);
- if that Envoy runs a different bootstrap (hash in the pid file) or a different command
  line (another binary, concurrency, log level...), or its admin API does not answer within
  ``startup_timeout``, it is replaced: SIGTERM, SIGKILL after ``terminate_timeout``, then a
  fresh spawn;
- otherwise it is adopted (:attr:`~EnvoySupervisor.adopted` is True): not our child, so the
  supervisor polls its liveness every 0.5 s, respawns it when it dies (``restarts`` and
  ``on_restart`` as for a child), and :meth:`~EnvoySupervisor.stop` stops it like a child.

The bootstrap embeds the xDS server's address and port, so adoption only happens when the
control plane listens on a **fixed xDS port** (``INTEGRATION_SERVICE_XDS_PORT``, 18000 by
default): with port 0 every run renders a different bootstrap and the old Envoy is replaced.
A fixed admin port is not needed: the admin address is read from ``admin-address``.
Adoption needs Linux ``/proc``; elsewhere the supervisor always spawns.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import inspect
import itertools
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from control_plane.sidecar.admin import EnvoyAdmin, EnvoyAdminError
from control_plane.sidecar.binary import find_envoy_binary

__all__ = ["EnvoyStartError", "EnvoySupervisor", "RestartHook"]

logger = logging.getLogger(__name__)

#: Called after Envoy came back up following an unexpected exit; may be sync or async.
RestartHook = Callable[["EnvoySupervisor"], Awaitable[None] | None]

LOG_LEVELS = frozenset({"trace", "debug", "info", "warning", "warn", "error", "critical", "off"})

_POLL_S = 0.05
#: Liveness poll of an adopted Envoy: not our child, so there is no exit status to wait on.
_ADOPTED_POLL_S = 0.5
#: How long to wait for an adopted Envoy to vanish after SIGKILL.
_KILL_WAIT_S = 5.0


class EnvoyStartError(RuntimeError):
    """Envoy exited or did not open its admin API while starting."""


def _parse_admin_address(text: str) -> str | None:
    """``127.0.0.1:41477`` -> ``http://127.0.0.1:41477``; None while the file is incomplete."""
    address = text.strip()
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return f"http://{address}"


def _bootstrap_hash(bootstrap: str) -> str:
    return hashlib.sha256(bootstrap.encode("utf-8")).hexdigest()


# -- /proc (Linux) -------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """``(state, start_time)`` of *pid* from ``/proc/<pid>/stat`` (fields 3 and 22)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
        # Field 2 is "(comm)" and comm may contain spaces and parentheses: split after it.
        fields = text[text.rindex(")") + 2 :].split()
        return fields[0], int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def _process_start_time(pid: int) -> int | None:
    stat = _proc_stat(pid)
    return None if stat is None else stat[1]


def _is_alive(pid: int, start_time: int) -> bool:
    """True while *pid* is the very process that started at *start_time*, and not a zombie.

    ``os.kill(pid, 0)`` alone is not enough: a dead Envoy whose new parent (init) does not
    reap it stays a zombie and still accepts signal 0, and a pid may be reused.
    """
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False  # gone, or another user's process: not our Envoy either way
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in {"Z", "X", "x"} and stat[1] == start_time


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [arg.decode("utf-8", "surrogateescape") for arg in raw.split(b"\0")[:-1]]


def _has_option(argv: Sequence[str], option: str, value: str) -> bool:
    return any(a == option and b == value for a, b in itertools.pairwise(argv))


@dataclass(frozen=True, slots=True)
class _PidRecord:
    """One line each in ``envoy.pid``: pid, start time, bootstrap SHA-256."""

    pid: int
    start_time: int
    bootstrap_sha256: str

    def dumps(self) -> str:
        return f"{self.pid}\n{self.start_time}\n{self.bootstrap_sha256}\n"

    @classmethod
    def loads(cls, text: str) -> _PidRecord | None:
        lines = text.split()
        if len(lines) != 3 or not lines[0].isdigit() or not lines[1].isdigit():
            return None
        return cls(int(lines[0]), int(lines[1]), lines[2])


class EnvoySupervisor:
    """Start (or adopt), watch, restart and stop one Envoy process.

    ``bootstrap`` is the YAML text (see :func:`control_plane.sidecar.bootstrap.render_bootstrap`).
    Append callables to :attr:`on_restart` to re-apply state after Envoy restarted (e.g. to
    reset per-node xDS bookkeeping: a restarted Envoy starts with an empty config).
    """

    def __init__(
        self,
        bootstrap: str,
        data_dir: Path,
        *,
        envoy_bin: Path | None = None,
        concurrency: int = 1,
        log_level: str = "info",
        drain_time_s: int = 5,
        parent_shutdown_time_s: int = 10,
        startup_timeout: float = 15.0,
        stop_drain_s: float = 1.0,
        terminate_timeout: float = 10.0,
        restart_backoff_s: float = 0.5,
        restart_backoff_max_s: float = 30.0,
        stable_after_s: float = 30.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if log_level not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {sorted(LOG_LEVELS)}")
        if drain_time_s < 0 or parent_shutdown_time_s <= drain_time_s:
            # Envoy's hot-restart sequence assumes the parent outlives the drain period.
            raise ValueError("need 0 <= drain_time_s < parent_shutdown_time_s")
        self.bootstrap = bootstrap
        # Absolute: Envoy's command line must not depend on the cwd of the run that spawned
        # it, or a restarted control plane would not recognise its Envoy (see adoption).
        self.data_dir = Path(data_dir).absolute()
        self.envoy_bin = envoy_bin
        self.concurrency = concurrency
        self.log_level = log_level
        self.drain_time_s = drain_time_s
        self.parent_shutdown_time_s = parent_shutdown_time_s
        self.startup_timeout = startup_timeout
        self.stop_drain_s = stop_drain_s
        self.terminate_timeout = terminate_timeout
        self.restart_backoff_s = restart_backoff_s
        self.restart_backoff_max_s = restart_backoff_max_s
        self.stable_after_s = stable_after_s
        self.extra_args = tuple(extra_args)
        self.on_restart: list[RestartHook] = []
        #: Times Envoy was respawned after an unexpected exit (attempts, as Kubernetes counts).
        self.restarts = 0
        self._process: asyncio.subprocess.Process | None = None
        self._adopted: _PidRecord | None = None
        self._admin_url: str | None = None
        self._started_at = 0.0
        self._watch_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._lock: IO[bytes] | None = None

    # -- files ------------------------------------------------------------------------

    @property
    def bootstrap_path(self) -> Path:
        return self.data_dir / "bootstrap.yaml"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "envoy.log"

    @property
    def admin_address_path(self) -> Path:
        return self.data_dir / "admin-address"

    @property
    def pid_path(self) -> Path:
        return self.data_dir / "envoy.pid"

    @property
    def lock_path(self) -> Path:
        return self.data_dir / "envoy.lock"

    # -- state ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while an Envoy process is alive (it may still be initialising)."""
        if self._adopted is not None:
            return _is_alive(self._adopted.pid, self._adopted.start_time)
        return self._process is not None and self._process.returncode is None

    @property
    def adopted(self) -> bool:
        """True while the current Envoy is one a previous run left behind, not our child.

        Set by :meth:`start`; False again once that Envoy died and was respawned, or after
        :meth:`stop`.
        """
        return self._adopted is not None

    @property
    def pid(self) -> int | None:
        if not self.running:
            return None
        if self._adopted is not None:
            return self._adopted.pid
        return None if self._process is None else self._process.pid

    @property
    def admin_url(self) -> str | None:
        """``http://127.0.0.1:<port>`` of the live Envoy's admin API, None when down."""
        return self._admin_url if self.running else None

    def admin(self, timeout: float = 5.0) -> EnvoyAdmin:
        """A new admin client for the current Envoy; the caller closes it."""
        if self.admin_url is None:
            raise EnvoyAdminError("Envoy is not running")
        return EnvoyAdmin(self.admin_url, timeout=timeout)

    def command(self, envoy_bin: Path) -> list[str]:
        """The Envoy command line (https://www.envoyproxy.io/docs/envoy/latest/operations/cli)."""
        return [
            str(envoy_bin),
            "--config-path",
            str(self.bootstrap_path),
            # Envoy binds the admin port from the bootstrap (0 = any free port) and writes
            # the bound address here; that is how we find it.
            "--admin-address-path",
            str(self.admin_address_path),
            # Hot restart would make Envoy die with the control plane (PR_SET_PDEATHSIG), and
            # leave a /dev/shm segment and abstract sockets keyed by a host-wide base id.
            "--disable-hot-restart",
            "--concurrency",
            str(self.concurrency),
            "--log-level",
            self.log_level,
            # Drain period of drain_listeners?graceful, LDS updates and hot restart.
            "--drain-time-s",
            str(self.drain_time_s),
            # Immediate, as in the Kubernetes manifest: with the default gradual strategy the
            # share of responses carrying "Connection: close" ramps up over the drain time
            # and stayed zero during the first second (measured with Envoy 1.40), so the
            # stop_drain_s window before SIGTERM told no client to reconnect.
            "--drain-strategy",
            "immediate",
            "--parent-shutdown-time-s",
            str(self.parent_shutdown_time_s),
            *self.extra_args,
        ]

    # -- lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Write the bootstrap, adopt or start Envoy, and wait until its admin API answers."""
        if self.running or self._watch_task is not None:
            raise RuntimeError("Envoy supervisor already started")
        self._stopping = False
        if self.envoy_bin is None:
            self.envoy_bin = find_envoy_binary()
        await asyncio.to_thread(self._acquire_lock)
        try:
            await asyncio.to_thread(self._write_bootstrap)
            if not await self._adopt_previous():
                await self._spawn()
        except BaseException:
            self._release_lock()
            raise
        self._watch_task = asyncio.create_task(self._watch(), name="envoy-supervisor")
        self._watch_task.add_done_callback(self._watch_done)

    async def wait_ready(self) -> None:
        """Wait until Envoy reports LIVE on ``/ready``; bound it with ``asyncio.timeout()``.

        With no control plane reachable this takes twice ``initial_fetch_timeout`` (2 x 10 s
        with the shared bootstrap): Envoy waits for the first CDS reply, and only then starts
        waiting for the first LDS reply (measured with Envoy 1.40).
        """
        while True:
            url = self.admin_url
            if url is not None:
                async with EnvoyAdmin(url, timeout=1.0) as admin:
                    with contextlib.suppress(EnvoyAdminError):
                        if await admin.ready():
                            return
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        """Drain listeners gracefully, SIGTERM, and SIGKILL after ``terminate_timeout``.

        An adopted Envoy is stopped the same way.
        """
        self._stopping = True
        task, self._watch_task = self._watch_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            process, record = self._process, self._adopted
            if process is not None and process.returncode is None:
                try:
                    await self._drain()
                    await self._terminate(process)
                finally:
                    # Whatever happened above (even cancellation), leave no process behind.
                    await self._kill(process)
            elif record is not None and _is_alive(record.pid, record.start_time):
                try:
                    await self._drain()
                finally:
                    await self._terminate_adopted(record)
            self._admin_url = None
            self._adopted = None
            await asyncio.to_thread(self._forget_process)
        finally:
            self._release_lock()

    # -- internals --------------------------------------------------------------------

    def _acquire_lock(self) -> None:
        if self._lock is not None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        lock = self.lock_path.open("ab")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise RuntimeError(f"another Envoy supervisor is running on {self.data_dir}") from None
        except BaseException:
            lock.close()
            raise
        self._lock = lock

    def _release_lock(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.close()  # closing the only descriptor releases the flock

    def _write_bootstrap(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.bootstrap_path.write_text(self.bootstrap, encoding="utf-8")

    def _write_pid_file(self, pid: int) -> None:
        """Record the Envoy just spawned; skipped when it already exited (nothing to adopt)."""
        start_time = _process_start_time(pid)
        if start_time is None:
            return
        record = _PidRecord(pid, start_time, _bootstrap_hash(self.bootstrap))
        tmp = self.pid_path.with_name(self.pid_path.name + ".tmp")
        tmp.write_text(record.dumps(), encoding="utf-8")
        tmp.replace(self.pid_path)  # atomic: a crash never leaves half a pid file

    def _forget_process(self) -> None:
        """After Envoy has exited: its pid file must not name a pid the kernel may reuse."""
        self.pid_path.unlink(missing_ok=True)

    def _open_log(self) -> IO[bytes]:
        return self.log_path.open("ab")

    def _read_text(self, path: Path) -> str | None:
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def _log_tail(self, lines: int = 20) -> str:
        text = self._read_text(self.log_path) or ""
        return "\n".join(text.splitlines()[-lines:])

    def _inspect_previous(self) -> tuple[_PidRecord, str | None] | None:
        """The live Envoy a previous run left on this data dir, with why not to adopt it.

        None when there is none: no or unreadable pid file, dead process, or a process that
        is not our Envoy (pid and start time coincide after a reboot, say) -- never touched.
        """
        text = self._read_text(self.pid_path)
        record = None if text is None else _PidRecord.loads(text)
        if record is None or not _is_alive(record.pid, record.start_time):
            self.pid_path.unlink(missing_ok=True)
            return None
        argv = _cmdline(record.pid)
        if (
            argv is None
            or not _has_option(argv, "--config-path", str(self.bootstrap_path))
            or not _has_option(argv, "--admin-address-path", str(self.admin_address_path))
        ):
            self.pid_path.unlink(missing_ok=True)
            return None
        assert self.envoy_bin is not None
        if record.bootstrap_sha256 != _bootstrap_hash(self.bootstrap):
            return record, "bootstrap changed"
        if argv != self.command(self.envoy_bin):
            return record, "command line changed"
        return record, None

    async def _adopt_previous(self) -> bool:
        """Adopt the Envoy of a previous run (True), or replace it / find none (False)."""
        if not sys.platform.startswith("linux"):
            return False
        found = await asyncio.to_thread(self._inspect_previous)
        if found is None:
            return False
        record, reason = found
        if reason is None:

            def exited() -> str | None:
                return None if _is_alive(record.pid, record.start_time) else "exited"

            try:
                url = await self._await_admin(exited)
            except EnvoyStartError as exc:
                reason = f"admin API not answering: {exc}"
            else:
                self._adopted, self._process, self._admin_url = record, None, url
                self._started_at = asyncio.get_running_loop().time()
                logger.info(
                    "envoy adopted from a previous run", extra={"pid": record.pid, "admin": url}
                )
                return True
        logger.warning(
            "replacing the envoy of a previous run", extra={"pid": record.pid, "reason": reason}
        )
        await self._terminate_adopted(record)
        await asyncio.to_thread(self._forget_process)
        return False

    async def _spawn(self) -> None:
        """Start one Envoy process and wait for its admin API; kill it on any failure."""
        assert self.envoy_bin is not None
        self._admin_url = None
        self._adopted = None
        self.admin_address_path.unlink(missing_ok=True)
        log = await asyncio.to_thread(self._open_log)
        try:
            process = await asyncio.create_subprocess_exec(
                *self.command(self.envoy_bin),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()  # the child holds its own copy of the descriptor
        self._process = process
        self._started_at = asyncio.get_running_loop().time()
        logger.info("envoy started", extra={"pid": process.pid, "log": str(self.log_path)})

        def exited() -> str | None:
            return None if process.returncode is None else f"exited with {process.returncode}"

        try:
            # First thing: should the control plane die now, the next run finds this Envoy.
            await asyncio.to_thread(self._write_pid_file, process.pid)
            self._admin_url = await self._await_admin(exited)
        except BaseException:
            await self._kill(process)
            raise

    async def _await_admin(self, exited: Callable[[], str | None]) -> str:
        """The admin URL once it answers; *exited* says why Envoy is gone (None: alive)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.startup_timeout
        url: str | None = None
        while loop.time() < deadline:
            why = exited()
            if why is not None:
                raise EnvoyStartError(f"Envoy {why} while starting:\n{self._log_tail()}")
            if url is None:
                text = await asyncio.to_thread(self._read_text, self.admin_address_path)
                url = None if text is None else _parse_admin_address(text)
            if url is not None:
                async with EnvoyAdmin(url, timeout=1.0) as admin:
                    with contextlib.suppress(EnvoyAdminError):
                        await admin.server_info()
                        return url
            await asyncio.sleep(_POLL_S)
        raise EnvoyStartError(
            f"Envoy admin API not up after {self.startup_timeout}s:\n{self._log_tail()}"
        )

    async def _wait_gone(
        self, record: _PidRecord, *, interval: float, within_s: float | None = None
    ) -> bool:
        """Poll until the adopted process is gone (True) or *within_s* passed (False)."""
        loop = asyncio.get_running_loop()
        deadline = None if within_s is None else loop.time() + within_s
        while _is_alive(record.pid, record.start_time):
            if deadline is not None and loop.time() >= deadline:
                return False
            await asyncio.sleep(interval)
        return True

    async def _watch(self) -> None:
        """Restart Envoy whenever it exits while the supervisor is not stopping."""
        failures = 0
        while True:
            returncode: int | None
            if self._adopted is not None:
                pid = self._adopted.pid
                await self._wait_gone(self._adopted, interval=_ADOPTED_POLL_S)
                returncode = None  # not our child: its exit status went to its new parent
            else:
                process = self._process
                assert process is not None
                pid = process.pid
                returncode = await process.wait()
            if self._stopping:
                return
            self._admin_url = None
            await asyncio.to_thread(self._forget_process)
            ran_for = asyncio.get_running_loop().time() - self._started_at
            if ran_for >= self.stable_after_s:
                failures = 0  # it had been healthy for a while: restart promptly
            delay = min(self.restart_backoff_s * 2**failures, self.restart_backoff_max_s)
            failures += 1
            logger.warning(
                "envoy exited unexpectedly; restarting",
                extra={"returncode": returncode, "pid": pid, "delay_s": delay},
            )
            await asyncio.sleep(delay)
            self.restarts += 1
            try:
                await self._spawn()
            except (EnvoyStartError, OSError):
                # _spawn killed the process (or never started one); the next loop turn sees
                # the dead process and retries after a longer backoff.
                logger.exception("envoy restart failed")
                continue
            await self._run_hooks()

    def _watch_done(self, task: asyncio.Task[None]) -> None:
        # A watcher that dies of a bug would silently stop restarts: make it loud.
        if not task.cancelled() and task.exception() is not None:
            logger.error("envoy supervision stopped", exc_info=task.exception())

    async def _run_hooks(self) -> None:
        for hook in list(self.on_restart):
            try:
                result = hook(self)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                # A broken hook must not stop supervision of the data plane.
                logger.exception("envoy on_restart hook failed", extra={"hook": repr(hook)})

    async def _drain(self) -> None:
        url = self._admin_url
        if url is None or self.stop_drain_s <= 0:
            return
        async with EnvoyAdmin(url, timeout=2.0) as admin:
            try:
                # SIGTERM alone closes listeners and connections at once; draining first lets
                # in-flight requests finish and tells HTTP clients to reconnect elsewhere.
                await admin.drain_listeners(graceful=True)
            except EnvoyAdminError:
                logger.warning("envoy drain_listeners failed; terminating without drain")
                return
        await asyncio.sleep(self.stop_drain_s)

    async def _terminate(self, process: asyncio.subprocess.Process) -> None:
        if process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), self.terminate_timeout)
        except TimeoutError:
            logger.warning("envoy ignored SIGTERM; sending SIGKILL", extra={"pid": process.pid})

    async def _kill(self, process: asyncio.subprocess.Process) -> None:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            # Shielded: reaping must finish even when the caller is being cancelled.
            await asyncio.shield(process.wait())

    def _signal_adopted(self, record: _PidRecord, signum: signal.Signals) -> None:
        # Identity re-checked right before each signal: never signal a recycled pid.
        if _is_alive(record.pid, record.start_time):
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, signum)

    async def _terminate_adopted(self, record: _PidRecord) -> None:
        """SIGTERM the adopted Envoy, SIGKILL after ``terminate_timeout``, wait until gone."""
        try:
            self._signal_adopted(record, signal.SIGTERM)
            if await self._wait_gone(record, interval=_POLL_S, within_s=self.terminate_timeout):
                return
            logger.warning("envoy ignored SIGTERM; sending SIGKILL", extra={"pid": record.pid})
        finally:
            # Also on cancellation: leave no process behind.
            self._signal_adopted(record, signal.SIGKILL)
        if not await self._wait_gone(record, interval=_POLL_S, within_s=_KILL_WAIT_S):
            logger.error("envoy survived SIGKILL", extra={"pid": record.pid})
