"""Run Envoy as a supervised child process: start it, restart it when it dies, stop it.

:class:`EnvoySupervisor` writes the rendered bootstrap into a data directory, starts Envoy,
learns the admin address Envoy actually bound (admin port 0 is allowed), restarts Envoy with
exponential backoff whenever it dies, and stops it gracefully: drain listeners through the
admin API, then SIGTERM, then SIGKILL. An Envoy that a crashed control plane left running is
adopted rather than started twice; :mod:`.adoption` holds how and why.

Files in the data directory:

- ``bootstrap.yaml``  -- the config Envoy runs with;
- ``envoy.log``       -- Envoy's stdout and stderr, appended across restarts;
- ``admin-address``   -- written by Envoy (``--admin-address-path``), e.g. ``127.0.0.1:41477``;
- ``envoy.pid``       -- written by the supervisor at each spawn: pid, start time and
  bootstrap hash, what the next run needs to adopt this Envoy (see :mod:`.adoption`);
- ``envoy.lock``      -- ``flock``-ed by the running supervisor, so that a second
  :meth:`~EnvoySupervisor.start` on the same data directory fails (see :mod:`.lock`).

How one Envoy process is started and ended, and why it runs in its own session with hot
restart disabled, is in :mod:`.process`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from control_plane.sidecar import adoption
from control_plane.sidecar.admin import EnvoyAdmin, EnvoyAdminError
from control_plane.sidecar.adoption import PidRecord
from control_plane.sidecar.binary import find_envoy_binary
from control_plane.sidecar.lock import DataDirLock
from control_plane.sidecar.process import (
    LOG_LEVELS,
    EnvoyStartError,
    await_admin,
    envoy_command,
    kill,
    spawn,
    terminate,
)

__all__ = ["EnvoySupervisor", "RestartHook"]

logger = logging.getLogger(__name__)

#: Called after Envoy came back up following an unexpected exit; may be sync or async.
RestartHook = Callable[["EnvoySupervisor"], Awaitable[None] | None]


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
        self._adopted: PidRecord | None = None
        self._admin_url: str | None = None
        self._started_at = 0.0
        self._watch_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._lock = DataDirLock(self.lock_path)

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
            return self._adopted.alive()
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
        """The Envoy command line this supervisor starts (see :func:`.process.envoy_command`)."""
        return envoy_command(
            envoy_bin,
            config_path=self.bootstrap_path,
            admin_address_path=self.admin_address_path,
            concurrency=self.concurrency,
            log_level=self.log_level,
            drain_time_s=self.drain_time_s,
            parent_shutdown_time_s=self.parent_shutdown_time_s,
            extra_args=self.extra_args,
        )

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
        await asyncio.to_thread(self._lock.acquire)
        try:
            await asyncio.to_thread(self._write_bootstrap)
            if not await self._adopt_previous():
                await self._spawn()
        except BaseException:
            self._lock.release()
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
                    await terminate(process, self.terminate_timeout)
                finally:
                    # Whatever happened above (even cancellation), leave no process behind.
                    await kill(process)
            elif record is not None and record.alive():
                try:
                    await self._drain()
                finally:
                    await adoption.terminate(record, self.terminate_timeout)
            self._admin_url = None
            self._adopted = None
            await asyncio.to_thread(self._forget_process)
        finally:
            self._lock.release()

    # -- internals --------------------------------------------------------------------

    def _write_bootstrap(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.bootstrap_path.write_text(self.bootstrap, encoding="utf-8")

    def _forget_process(self) -> None:
        """After Envoy has exited: its pid file must not name a pid the kernel may reuse."""
        self.pid_path.unlink(missing_ok=True)

    async def _adopt_previous(self) -> bool:
        """Adopt the Envoy of a previous run (True), or replace it / find none (False)."""
        assert self.envoy_bin is not None
        found = await adoption.adopt_previous(
            self.pid_path,
            bootstrap=self.bootstrap,
            command=self.command(self.envoy_bin),
            config_path=self.bootstrap_path,
            admin_address_path=self.admin_address_path,
            log_path=self.log_path,
            startup_timeout=self.startup_timeout,
            terminate_timeout=self.terminate_timeout,
        )
        if found is None:
            return False
        self._adopted, self._process = found[0], None
        self._admin_url = found[1]
        self._started_at = asyncio.get_running_loop().time()
        return True

    async def _spawn(self) -> None:
        """Start one Envoy process and wait for its admin API; kill it on any failure."""
        assert self.envoy_bin is not None
        self._admin_url = None
        self._adopted = None
        self.admin_address_path.unlink(missing_ok=True)
        process = await spawn(self.command(self.envoy_bin), self.log_path)
        self._process = process
        self._started_at = asyncio.get_running_loop().time()
        logger.info("envoy started", extra={"pid": process.pid, "log": str(self.log_path)})

        def exited() -> str | None:
            return None if process.returncode is None else f"exited with {process.returncode}"

        try:
            # First thing: should the control plane die now, the next run finds this Envoy.
            await asyncio.to_thread(
                adoption.write_pid_file, self.pid_path, process.pid, self.bootstrap
            )
            self._admin_url = await await_admin(
                self.admin_address_path, self.log_path, exited, within_s=self.startup_timeout
            )
        except BaseException:
            await kill(process)
            raise

    async def _watch(self) -> None:
        """Restart Envoy whenever it exits while the supervisor is not stopping."""
        failures = 0
        while True:
            returncode: int | None
            if self._adopted is not None:
                pid = self._adopted.pid
                await adoption.wait_gone(self._adopted, interval=adoption.ADOPTED_POLL_S)
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
