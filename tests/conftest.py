"""Fixtures shared by every test tier."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

# -- PostgreSQL ----------------------------------------------------------------------------
# ``postgres_dsn`` (session): a real server, started once from the machine's binaries, or
# the one named by TEST_POSTGRESQL_URL. ``postgres_database`` (per test): a fresh, empty
# database on it, dropped afterwards, so tests never see each other's rows.


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """DSN of a database on a running PostgreSQL 15 (superuser, trust auth)."""
    from tests.support.postgres import (
        ENV_URL,
        PostgresUnavailable,
        find_bin_dir,
        running_postgres,
    )

    if url := os.environ.get(ENV_URL):
        yield url
        return
    try:
        find_bin_dir()
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL not available: {exc} (or set {ENV_URL})")
    with running_postgres() as server:
        yield server.create_database("integration_service_test")


@pytest.fixture
async def postgres_database(postgres_dsn: str) -> AsyncIterator[str]:
    """DSN of a brand-new database for this test only (dropped at teardown)."""
    import asyncpg

    from tests.support.postgres import unique_database_name, with_database

    name = unique_database_name("test")
    admin = await asyncpg.connect(postgres_dsn, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield with_database(postgres_dsn, name)
    finally:
        admin = await asyncpg.connect(postgres_dsn, timeout=10)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


# -- Redis ---------------------------------------------------------------------------------
# ``redis_url`` (session): a real redis-server (Debian package) without persistence, started
# once on a free loopback port, or the one named by TEST_REDIS_URL.


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    from tests.support.redis import RedisUnavailable, running_redis

    if url := os.environ.get("TEST_REDIS_URL"):
        yield url
        return
    try:
        with running_redis() as port:
            yield f"redis://127.0.0.1:{port}/0"
    except RedisUnavailable as exc:
        pytest.skip(f"Redis not available: {exc} (or set TEST_REDIS_URL)")
