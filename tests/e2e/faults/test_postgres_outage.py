"""PostgreSQL stops under a running control plane, then comes back.

Reads are served from the in-memory registry view, so they do not notice. Every write
needs the store: it fails as a whole (the transaction never commits) and answers 503
problem+json with ``Retry-After``. The asyncpg pool opens new connections on demand, so the
first write after PostgreSQL is back succeeds without a restart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.e2e.faults.ledger import Figures
from tests.e2e.faults.load import timed_get
from tests.e2e.faults.stack import Answer, Api, running_service
from tests.support.ports import free_port
from tests.support.postgres import PostgresServer
from tests.support.upstream import running_upstream
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.envoy, pytest.mark.postgres]

READS = 20
OUTAGE_S = 2.0
WRITES = 6


def _is_problem_503(answer: Answer) -> bool:
    return (
        answer.status == 503
        and answer.headers.get("Content-Type", "").startswith("application/problem+json")
        and int(answer.headers.get("Retry-After", "0")) > 0
        and isinstance(answer.body, dict)
        and answer.body.get("status") == 503
    )


async def _writes(api: Api, upstream: str, ports: list[int]) -> list[Answer]:
    """Creates, an update and a delete: every kind of write the registry API takes."""
    answers = []
    for n in range(WRITES - 2):
        doc = {"id": f"lost-{n}", "kind": "http", "upstream": upstream, "listen_port": ports[n]}
        answers.append(await api.post("/integrations", doc))
    changed = {"id": "kept", "kind": "http", "upstream": upstream, "description": "changed"}
    answers.append(await api.call("PUT", "/integrations/kept", changed))
    answers.append(await api.call("DELETE", "/integrations/kept"))
    return answers


async def test_reads_from_memory_writes_503_and_recovery_without_restart(
    tmp_path: Path, private_postgres: PostgresServer, measure: Callable[[str], Figures]
) -> None:
    figures = measure("postgres_outage")
    dsn = private_postgres.create_database("faults")
    ports = [free_port() for _ in range(WRITES)]
    async with (
        running_upstream() as upstream,
        running_service(tmp_path, "integrations: []\n", env={"POSTGRESQL_URL": dsn}) as (
            service,
            api,
        ),
    ):
        kept = {"id": "kept", "kind": "http", "upstream": upstream.url, "listen_port": ports[-1]}
        created = await api.post("/integrations", kept)
        assert created.status == 201, created

        async def listening() -> bool:
            async with aiohttp.ClientSession() as session:
                status, _, _ = await timed_get(session, f"http://127.0.0.1:{ports[-1]}/")
            return status == 200

        await wait_until(listening, deadline_s=10, message="kept listener up")

        private_postgres.stop()
        stopped = time.monotonic()
        reads: list[Answer] = []
        for _ in range(READS // 2):
            reads.append(await api.get("/integrations"))
            reads.append(await api.get("/integrations/kept/status"))
        writes = await _writes(api, upstream.url, ports)
        await asyncio.sleep(OUTAGE_S)  # a real gap: pooled connections are dead by now
        for _ in range(READS // 2):
            reads.append(await api.get("/integrations"))
            reads.append(await api.get("/integrations/kept/status"))
        ready = await api.get("/health/ready")
        health = await api.get("/health")
        async with aiohttp.ClientSession() as session:
            traffic = [
                (await timed_get(session, f"http://127.0.0.1:{ports[-1]}/while-pg-down"))[0]
                for _ in range(10)
            ]
        outage_s = time.monotonic() - stopped

        private_postgres.start()
        restarted = time.monotonic()
        attempts = 0
        recovered: Answer | None = None

        async def write_succeeds() -> bool:
            nonlocal attempts, recovered
            attempts += 1
            doc = {"id": "after", "kind": "http", "upstream": upstream.url}
            recovered = await api.post("/integrations", doc)
            return recovered.status == 201

        await wait_until(write_succeeds, deadline_s=30, interval_s=0.2, message="write again")
        recovery_s = time.monotonic() - restarted
        listed = await api.ok("/integrations")
        same_process = service.process is not None and service.process.poll() is None

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        rows = await conn.fetch("SELECT id, version FROM integrations ORDER BY id")
        events = await conn.fetch("SELECT type, envelope->'data'->>'id' AS id FROM outbox")
        port_rows = await conn.fetch("SELECT integration_id FROM port_assignments")
    finally:
        await conn.close()
    stored = {r["id"]: r["version"] for r in rows}

    figures.update(
        {
            "reads_during_outage": len(reads),
            "reads_failed": sum(1 for r in reads if r.status != 200),
            "writes_during_outage": len(writes),
            "writes_503_problem_retry_after": sum(1 for w in writes if _is_problem_503(w)),
            "write_503_max_ms": round(max(w.elapsed_ms for w in writes), 1),
            "ready_during_outage": ready.status,
            "health_store_ok_during_outage": health.body["checks"]["store"]["ok"],
            "sidecar_requests_failed": sum(1 for s in traffic if s != 200),
            "outage_s": round(outage_s, 2),
            "first_write_after_recovery_s": round(recovery_s, 2),
            "write_attempts_until_success": attempts,
            "rows_after_recovery": sorted(stored),
            "events_in_outbox": len(events),
        }
    )
    assert all(r.status == 200 for r in reads), [r for r in reads if r.status != 200][:2]
    assert all(_is_problem_503(w) for w in writes), writes
    # Readiness is this pod's data path, which the store does not carry (issue 14 item 7):
    # a database outage must not take every application pod out of its Service.
    assert ready.status == 200, ready
    assert health.body["status"] == "degraded" and health.body["checks"]["store"]["ok"] is False
    assert traffic == [200] * 10, "the data plane does not depend on the store"
    assert same_process, "recovered without a restart"
    assert recovered is not None and recovered.status == 201
    assert {i["id"] for i in listed["items"]} == {"kept", "after"}
    assert stored == {"kept": 1, "after": 1}, "only what succeeded, nothing half-written"
    assert sorted((e["type"], e["id"]) for e in events) == [
        ("integration.registered", "after"),
        ("integration.registered", "kept"),
    ]
    assert {r["integration_id"] for r in port_rows} <= {"kept", "after"}
