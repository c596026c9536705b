"""Pick the store engine from the settings: PostgreSQL when a URL is given, else SQLite."""

from __future__ import annotations

from pathlib import Path

from control_plane.store.protocol import RegistryStore

__all__ = ["SQLITE_FILENAME", "create_store"]

SQLITE_FILENAME = "registry.sqlite3"


def create_store(postgresql_url: str | None, data_dir: Path) -> RegistryStore:
    """A not-yet-opened store: :class:`PostgresStore` for ``postgresql_url``, else a
    :class:`SqliteStore` at ``data_dir/registry.sqlite3`` (the embedded default)."""
    if postgresql_url:
        from control_plane.store.postgres import PostgresStore

        return PostgresStore(postgresql_url)
    from control_plane.store.sqlite import SqliteStore

    return SqliteStore(data_dir / SQLITE_FILENAME)
