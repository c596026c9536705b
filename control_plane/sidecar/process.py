"""One Envoy process: its command line, starting it, waiting for its admin API, ending it.

These are the mechanics; :class:`~.supervisor.EnvoySupervisor` decides when to use them
(start, restart with backoff, stop). They live apart from the supervisor because adoption
(:mod:`.adoption`) needs them too: it compares a running Envoy's command line with the one
this run would use, and waits for the admin API of an Envoy it did not start in the same way
as the supervisor waits for one it just spawned.

Envoy runs in its own session (process group), so a Ctrl-C aimed at the control plane does
not kill Envoy behind the supervisor's back; the supervisor's
:meth:`~.supervisor.EnvoySupervisor.stop` decides how Envoy ends. Envoy also runs with hot
restart disabled: with hot restart on, Envoy calls ``prctl(PR_SET_PDEATHSIG, SIGTERM)`` at
startup (``HotRestartImpl``; measured with Envoy 1.40) and so dies with its parent, the
control plane. The supervisor never hot-restarts (a restart is a fresh process), so it only
loses that, plus the shared memory segment and abstract sockets hot restart would create.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Sequence
from pathlib import Path

from control_plane.sidecar.admin import EnvoyAdmin, EnvoyAdminError

__all__ = [
    "LOG_LEVELS",
    "EnvoyStartError",
    "await_admin",
    "envoy_command",
    "kill",
    "read_text",
    "spawn",
    "terminate",
]

logger = logging.getLogger(__name__)

#: What ``--log-level`` accepts.
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


def read_text(path: Path) -> str | None:
    """The file's text; None when it does not exist (yet)."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def _log_tail(log_path: Path, lines: int = 20) -> str:
    text = read_text(log_path) or ""
    return "\n".join(text.splitlines()[-lines:])


def envoy_command(
    envoy_bin: Path,
    *,
    config_path: Path,
    admin_address_path: Path,
    concurrency: int,
    log_level: str,
    drain_time_s: int,
    parent_shutdown_time_s: int,
    extra_args: Sequence[str],
) -> list[str]:
    """The Envoy command line (https://www.envoyproxy.io/docs/envoy/latest/operations/cli)."""
    return [
        str(envoy_bin),
        "--config-path",
        str(config_path),
        # Envoy binds the admin port from the bootstrap (0 = any free port) and writes
        # the bound address here; that is how we find it.
        "--admin-address-path",
        str(admin_address_path),
        # Hot restart would make Envoy die with the control plane (PR_SET_PDEATHSIG), and
        # leave a /dev/shm segment and abstract sockets keyed by a host-wide base id.
        "--disable-hot-restart",
        "--concurrency",
        str(concurrency),
        "--log-level",
        log_level,
        # Drain period of drain_listeners?graceful, LDS updates and hot restart.
        "--drain-time-s",
        str(drain_time_s),
        # Immediate, as in the Kubernetes manifest: with the default gradual strategy the
        # share of responses carrying "Connection: close" ramps up over the drain time
        # and stayed zero during the first second (measured with Envoy 1.40), so the
        # stop_drain_s window before SIGTERM told no client to reconnect.
        "--drain-strategy",
        "immediate",
        "--parent-shutdown-time-s",
        str(parent_shutdown_time_s),
        *extra_args,
    ]


async def spawn(command: Sequence[str], log_path: Path) -> asyncio.subprocess.Process:
    """Start Envoy with its stdout and stderr appended to *log_path*.

    Envoy runs in its own session, so a Ctrl-C aimed at the control plane does not reach it.
    """
    log = await asyncio.to_thread(log_path.open, "ab")
    try:
        return await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()  # the child holds its own copy of the descriptor


async def await_admin(
    admin_address_path: Path, log_path: Path, exited: Callable[[], str | None], *, within_s: float
) -> str:
    """The admin URL once it answers; *exited* says why Envoy is gone (None: alive).

    Envoy writes the address it bound to *admin_address_path*; *log_path* is quoted in the
    :class:`EnvoyStartError` raised when Envoy exits or does not answer within *within_s*.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    url: str | None = None
    while loop.time() < deadline:
        why = exited()
        if why is not None:
            raise EnvoyStartError(f"Envoy {why} while starting:\n{_log_tail(log_path)}")
        if url is None:
            text = await asyncio.to_thread(read_text, admin_address_path)
            url = None if text is None else _parse_admin_address(text)
        if url is not None:
            async with EnvoyAdmin(url, timeout=1.0) as admin:
                with contextlib.suppress(EnvoyAdminError):
                    await admin.server_info()
                    return url
        await asyncio.sleep(_POLL_S)
    raise EnvoyStartError(f"Envoy admin API not up after {within_s}s:\n{_log_tail(log_path)}")


async def terminate(process: asyncio.subprocess.Process, within_s: float) -> None:
    """SIGTERM our child Envoy and wait up to *within_s* for it to exit; :func:`kill` follows."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), within_s)
    except TimeoutError:
        logger.warning("envoy ignored SIGTERM; sending SIGKILL", extra={"pid": process.pid})


async def kill(process: asyncio.subprocess.Process) -> None:
    """SIGKILL our child Envoy unless it already exited, and reap it."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        # Shielded: reaping must finish even when the caller is being cancelled.
        await asyncio.shield(process.wait())
