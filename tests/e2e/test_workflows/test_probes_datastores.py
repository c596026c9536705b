"""Probes of the ``tcp_proxy`` kinds through real Envoy against the real servers:
PostgreSQL (asyncpg ``SELECT 1``) and Redis (redis-py ``PING`` + Pub/Sub round trip)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from tests.support.ports import free_port
from tests.support.probe_stack import probe_stack
from tests.support.redis import running_redis

pytestmark = pytest.mark.envoy

REDIS_PASSWORD = "redis-pass-e2e-Qm3"
PG_PASSWORD = "pg-pass-e2e-Hs8"


def _items(*items: dict[str, object]) -> str:
    return json.dumps({"integrations": list(items)})


@pytest.mark.postgres
async def test_postgresql_select_one_through_sidecar(tmp_path: Path, postgres_dsn: str) -> None:
    dsn = urlsplit(postgres_dsn)
    database = dsn.path.lstrip("/")
    # A role with a password, used by the probe from a file: reference. (The test server
    # trusts loopback connections, so a wrong password is shown with a missing database.)
    role = f"probe_{free_port()}"
    admin = await asyncpg.connect(postgres_dsn)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{PG_PASSWORD}'")
    finally:
        await admin.close()
    (tmp_path / "pg-pass").write_text(PG_PASSWORD + "\n")
    upstream = f"tcp://{dsn.hostname}:{dsn.port}"
    ports = {name: free_port() for name in ("pg", "pg-nodb", "pg-down")}
    registry = _items(
        {
            "id": "pg",
            "kind": "postgresql",
            "upstream": upstream,
            "listen_port": ports["pg"],
            "credentials": {"password": f"file:{tmp_path / 'pg-pass'}"},
            "settings": {"user": role, "database": database},
        },
        {
            "id": "pg-nodb",
            "kind": "postgresql",
            "upstream": upstream,
            "listen_port": ports["pg-nodb"],
            "settings": {"user": role, "database": "no_such_database"},
        },
        {
            "id": "pg-down",
            "kind": "postgresql",
            "upstream": f"tcp://127.0.0.1:{free_port()}",
            "listen_port": ports["pg-down"],
            "settings": {"user": role, "database": database},
        },
    )
    try:
        async with probe_stack(tmp_path, registry) as stack:
            ok = await stack.test("pg")
            assert ok["ok"] is True, ok
            assert ok["step"] == "query"
            assert f"SELECT 1 as {role}@{database}" in ok["detail"]
            nodb = await stack.test("pg-nodb")
            assert (nodb["ok"], nodb["step"]) == (False, "auth"), nodb
            assert "no_such_database" in nodb["detail"]
            down = await stack.test("pg-down")
            assert (down["ok"], down["step"]) == (False, "connect"), down
            assert "upstream_cx_connect_fail" in down["detail"], "Envoy's counter explains it"
            stack.service.stop()
            assert PG_PASSWORD not in stack.service.log()
    finally:
        admin = await asyncpg.connect(postgres_dsn)
        try:
            await admin.execute(f"DROP ROLE IF EXISTS {role}")
        finally:
            await admin.close()


@pytest.mark.redis
async def test_redis_ping_and_pubsub_through_sidecar(tmp_path: Path, redis_url: str) -> None:
    plain = urlsplit(redis_url)
    (tmp_path / "redis-pass").write_text(REDIS_PASSWORD + "\n")
    ports = {n: free_port() for n in ("redis", "redis-auth", "redis-badpass", "redis-down")}
    with running_redis("--requirepass", REDIS_PASSWORD, base_dir=tmp_path) as secured:
        registry = _items(
            {
                "id": "redis",
                "kind": "redis",
                "upstream": f"tcp://{plain.hostname}:{plain.port}",
                "listen_port": ports["redis"],
            },
            {
                "id": "redis-auth",
                "kind": "redis",
                "upstream": f"tcp://127.0.0.1:{secured}",
                "listen_port": ports["redis-auth"],
                "credentials": {"password": f"file:{tmp_path / 'redis-pass'}"},
                "settings": {"database": 3},
            },
            {
                "id": "redis-badpass",
                "kind": "redis",
                "upstream": f"tcp://127.0.0.1:{secured}",
                "listen_port": ports["redis-badpass"],
                "credentials": {"password": "env:E2E_BAD_REDIS_PASSWORD"},
            },
            {
                "id": "redis-down",
                "kind": "redis",
                "upstream": f"tcp://127.0.0.1:{free_port()}",
                "listen_port": ports["redis-down"],
            },
        )
        env = {"E2E_BAD_REDIS_PASSWORD": "not-the-password"}
        async with probe_stack(tmp_path, registry, env) as stack:
            for ident in ("redis", "redis-auth"):
                result = await stack.test(ident)
                assert result["ok"] is True, result
                assert result["step"] == "pubsub"
                assert "PUBLISH reached 1 subscriber(s) and came back" in result["detail"]
            bad = await stack.test("redis-badpass")
            assert (bad["ok"], bad["step"]) == (False, "auth"), bad
            assert "not-the-password" not in json.dumps(bad)
            down = await stack.test("redis-down")
            assert (down["ok"], down["step"]) == (False, "connect"), down
            stack.service.stop()
            assert REDIS_PASSWORD not in stack.service.log()
