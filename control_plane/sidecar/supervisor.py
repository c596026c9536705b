"""Run Envoy as a supervised child process.

:class:`EnvoySupervisor` writes the rendered bootstrap into a data directory, starts Envoy,
learns the admin address Envoy actually bound (admin port 0 is allowed), restarts Envoy with
exponential backoff whenever it dies, and stops it gracefully: drain listeners through the
admin API, then SIGTERM, then SIGKILL.

Files in the data directory:

- ``bootstrap.yaml``  -- the config Envoy runs with;
- ``envoy.log``       -- Envoy's stdout and stderr, appended across restarts;
- ``admin-address``   -- written by Envoy (``--admin-address-path``), e.g. ``127.0.0.1:41477``;
- ``base-id``         -- written by Envoy (``--base-id-path``), the hot-restart base id it chose.

Envoy runs in its own session (process group), so a Ctrl-C aimed at the control plane does
not kill Envoy behind the supervisor's back; the supervisor's :meth:`~EnvoySupervisor.stop`
decides how Envoy ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
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


class EnvoyStartError(RuntimeError):
    """Envoy exited or did not open its admin API while starting."""


def _parse_admin_address(text: str) -> str | None:
    """``127.0.0.1:41477`` -> ``http://127.0.0.1:41477``; None while the file is incomplete."""
    address = text.strip()
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return f"http://{address}"


class EnvoySupervisor:
    """Start, watch, restart and stop one Envoy process.

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
        self.data_dir = Path(data_dir)
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
        self._admin_url: str | None = None
        self._started_at = 0.0
        self._watch_task: asyncio.Task[None] | None = None
        self._stopping = False

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
    def base_id_path(self) -> Path:
        return self.data_dir / "base-id"

    # -- state ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while an Envoy process is alive (it may still be initialising)."""
        return self._process is not None and self._process.returncode is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running and self._process is not None else None

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
            # Hot restart uses shared memory and abstract sockets keyed by the base id; a
            # fixed id (default 0) would make a second Envoy on the host fail to start.
            "--use-dynamic-base-id",
            "--base-id-path",
            str(self.base_id_path),
            "--concurrency",
            str(self.concurrency),
            "--log-level",
            self.log_level,
            # Drain period of drain_listeners?graceful, LDS updates and hot restart.
            "--drain-time-s",
            str(self.drain_time_s),
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
        """Write the bootstrap, start Envoy and wait until its admin API answers."""
        if self.running or self._watch_task is not None:
            raise RuntimeError("Envoy supervisor already started")
        self._stopping = False
        if self.envoy_bin is None:
            self.envoy_bin = find_envoy_binary()
        await asyncio.to_thread(self._write_bootstrap)
        await self._spawn()
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
        """Drain listeners gracefully, SIGTERM, and SIGKILL after ``terminate_timeout``."""
        self._stopping = True
        task, self._watch_task = self._watch_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        process = self._process
        if process is not None and process.returncode is None:
            try:
                await self._drain()
                await self._terminate(process)
            finally:
                # Whatever happened above (even cancellation), leave no process behind.
                await self._kill(process)
        self._admin_url = None
        await asyncio.to_thread(self._remove_shared_memory)

    # -- internals --------------------------------------------------------------------

    def _write_bootstrap(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.bootstrap_path.write_text(self.bootstrap, encoding="utf-8")

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

    def _remove_shared_memory(self) -> None:
        """Remove the hot-restart shared memory segment of the exited Envoy.

        Measured with Envoy 1.40: the segment ``/dev/shm/envoy_shared_memory_<base_id*10>``
        stays behind after SIGTERM as well as SIGKILL. The base id was chosen dynamically for
        this process only, so once it has exited the segment is ours to delete.
        """
        text = self._read_text(self.base_id_path)
        if text is None or not text.strip().isdigit() or not sys.platform.startswith("linux"):
            return
        # POSIX shared memory objects are files under /dev/shm on Linux; we only delete.
        segment = Path("/dev/shm") / f"envoy_shared_memory_{int(text.strip()) * 10}"  # noqa: S108
        with contextlib.suppress(OSError):
            segment.unlink(missing_ok=True)

    async def _spawn(self) -> None:
        """Start one Envoy process and wait for its admin API; kill it on any failure."""
        assert self.envoy_bin is not None
        self._admin_url = None
        for stale in (self.admin_address_path, self.base_id_path):
            stale.unlink(missing_ok=True)
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
        try:
            self._admin_url = await self._await_admin(process)
        except BaseException:
            await self._kill(process)
            raise

    async def _await_admin(self, process: asyncio.subprocess.Process) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.startup_timeout
        url: str | None = None
        while loop.time() < deadline:
            if process.returncode is not None:
                raise EnvoyStartError(
                    f"Envoy exited with {process.returncode} while starting:\n{self._log_tail()}"
                )
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

    async def _watch(self) -> None:
        """Restart Envoy whenever it exits while the supervisor is not stopping."""
        failures = 0
        while True:
            process = self._process
            assert process is not None
            returncode = await process.wait()
            if self._stopping:
                return
            self._admin_url = None
            await asyncio.to_thread(self._remove_shared_memory)
            ran_for = asyncio.get_running_loop().time() - self._started_at
            if ran_for >= self.stable_after_s:
                failures = 0  # it had been healthy for a while: restart promptly
            delay = min(self.restart_backoff_s * 2**failures, self.restart_backoff_max_s)
            failures += 1
            logger.warning(
                "envoy exited unexpectedly; restarting",
                extra={"returncode": returncode, "pid": process.pid, "delay_s": delay},
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
