"""A real, throw-away PostgreSQL server built from the machine's binaries.

``PostgresServer`` runs ``initdb`` in a private temp dir, starts ``postgres`` on a free
loopback port (its unix socket lives in the same temp dir, so parallel runs never share
``/tmp/.s.PGSQL.*``), trusts every local connection, and removes everything on
``stop(remove=True)``. PostgreSQL refuses to run as root, so under root every server
command runs as the ``postgres`` system user (created when missing).

``TEST_POSTGRESQL_URL`` points the fixtures at an existing server instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tests.support.ports import free_port

__all__ = [
    "ENV_URL",
    "PostgresServer",
    "PostgresUnavailable",
    "find_bin_dir",
    "running_postgres",
    "unique_database_name",
    "with_database",
]

ENV_URL = "TEST_POSTGRESQL_URL"
_BIN_DIRS = ("/usr/lib/postgresql/15/bin",)
_SERVER_USER = "postgres"
_SUPERUSER = "postgres"
_START_ATTEMPTS = 3


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL binaries on this machine."""


def find_bin_dir() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl`` (``PG_BIN_DIR`` overrides)."""
    candidates = [os.environ["PG_BIN_DIR"]] if os.environ.get("PG_BIN_DIR") else []
    for candidate in [*candidates, *_BIN_DIRS]:
        path = Path(candidate)
        if (path / "initdb").is_file() and (path / "pg_ctl").is_file():
            return path
    raise PostgresUnavailable(f"no initdb/pg_ctl in {[*candidates, *_BIN_DIRS]}")


def _ensure_server_user() -> None:
    if subprocess.run(["id", _SERVER_USER], capture_output=True, check=False).returncode:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                _SERVER_USER,
            ],
            check=True,
            capture_output=True,
        )


def unique_database_name(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


def with_database(dsn: str, database: str) -> str:
    """``dsn`` (a URL) pointing at ``database`` instead."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


class PostgresServer:
    """One private PostgreSQL cluster; ``start()``/``stop()`` may be repeated."""

    def __init__(self, base_dir: Path | None = None, *, bin_dir: Path | None = None) -> None:
        self.bin_dir = bin_dir or find_bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="pg-", dir=base_dir))
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.log_file = self.root / "postgres.log"
        self.port = 0
        self._as_root = os.geteuid() == 0
        self._initialised = False

    @property
    def admin_dsn(self) -> str:
        """Superuser DSN on the ``postgres`` maintenance database."""
        return f"postgresql://{_SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def dsn(self, database: str = "postgres", *, password: str | None = None) -> str:
        auth = _SUPERUSER if password is None else f"{_SUPERUSER}:{password}"
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / argv[0]), *argv[1:]]
        if self._as_root:
            command = ["runuser", "-u", _SERVER_USER, "--", *command]
        result = subprocess.run(
            command, cwd=self.root, capture_output=True, text=True, check=False, timeout=120
        )
        if result.returncode:
            log = self.log_file.read_text() if self.log_file.exists() else ""
            raise RuntimeError(
                f"{' '.join(argv[:2])} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}\n{log[-4000:]}"
            )
        return result

    def _initdb(self) -> None:
        self.socket_dir.mkdir()
        if self._as_root:
            _ensure_server_user()
            shutil.chown(self.root, _SERVER_USER, _SERVER_USER)
            shutil.chown(self.socket_dir, _SERVER_USER, _SERVER_USER)
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            _SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
            "--no-instructions",
        )
        self._initialised = True

    def start(self) -> None:
        """Start (initialising on first use); keeps the same port across restarts."""
        if not self._initialised:
            self._initdb()
        attempts = 1 if self.port else _START_ATTEMPTS
        for attempt in range(attempts):
            port = self.port or free_port()
            # Durability is irrelevant for a throw-away test cluster; speed is not.
            options = (
                f"-p {port} -k {self.socket_dir} -c listen_addresses=127.0.0.1"
                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                " -c max_connections=200"
            )
            try:
                self._run(
                    "pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file),
                    "-o", options, "-w", "-t", "60", "start",
                )  # fmt: skip
            except RuntimeError:
                if attempt + 1 == attempts:  # another process may have taken the port
                    raise
                continue
            self.port = port
            return

    def stop(self, *, remove: bool = False) -> None:
        if self._initialised and (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60", "stop")
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self, name: str) -> str:
        """Create ``name`` with ``createdb`` and return its DSN."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", _SUPERUSER, name)
        return self.dsn(name)


@contextmanager
def running_postgres(base_dir: Path | None = None) -> Iterator[PostgresServer]:
    """A started private server, stopped and deleted on exit."""
    server = PostgresServer(base_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop(remove=True)
