"""Redis stops under a running control plane (PostgreSQL store, embedded Envoy).

A mutation and its event commit in one store transaction (outbox), so a Redis outage
cannot fail a mutation; the relay publishes the backlog, in order, once its own Redis
subscriptions are live again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.faults.ledger import Figures
from tests.e2e.faults.stack import outbox_counts, running_service
from tests.e2e.faults.tap import tapping
from tests.support.redis_server import RedisServer
from tests.support.upstream import running_upstream
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.envoy, pytest.mark.postgres, pytest.mark.redis]

CREATES = 20


async def test_mutations_succeed_events_wait_in_outbox_and_all_go_out(
    tmp_path: Path,
    postgres_database: str,
    private_redis: RedisServer,
    measure: Callable[[str], Figures],
) -> None:
    figures = measure("redis_outage")
    env = {"POSTGRESQL_URL": postgres_database, "REDIS_URL": private_redis.url}
    async with (
        running_upstream() as upstream,
        tapping(private_redis.url) as tap,
        running_service(tmp_path, "integrations: []\n", env=env) as (_service, api),
    ):
        first = await api.post(
            "/integrations", {"id": "before", "kind": "http", "upstream": upstream.url}
        )
        assert first.status == 201, first
        await wait_until(lambda: tap.delivered == 1, deadline_s=10, message="first event")

        private_redis.stop()
        await asyncio.sleep(0.5)  # the control plane's subscriber notices the outage
        expected: list[tuple[str, str]] = []
        answers = []
        for n in range(CREATES):
            doc = {"id": f"svc-{n:02d}", "kind": "http", "upstream": upstream.url}
            answers.append(await api.post("/integrations", doc))
            expected.append(("integration.registered", doc["id"]))
        update = {"id": "svc-00", "kind": "http", "upstream": upstream.url, "description": "v2"}
        answers.append(await api.call("PUT", "/integrations/svc-00", update))
        expected.append(("integration.updated", "svc-00"))
        answers.append(await api.call("DELETE", "/integrations/svc-01"))
        expected.append(("integration.deregistered", "svc-01"))
        produced, pending = await outbox_counts(postgres_database)
        delivered_during_outage = tap.delivered - 1

        private_redis.start()
        restarted = time.monotonic()
        await wait_until(
            lambda: tap.delivered >= 1 + len(expected), deadline_s=30, message="backlog out"
        )
        delivery_s = time.monotonic() - restarted

        async def drained() -> bool:
            return (await outbox_counts(postgres_database))[1] == 0

        await wait_until(drained, deadline_s=10, message="outbox marked sent")
        await asyncio.sleep(1.0)  # room for a duplicate to show up, were there one
        produced_total, pending_after = await outbox_counts(postgres_database)

    statuses = [a.status for a in answers]
    figures.update(
        {
            "mutations_during_outage": len(answers),
            "mutations_failed": sum(1 for s in statuses if s >= 300),
            "mutation_max_ms": round(max(a.elapsed_ms for a in answers), 1),
            "events_produced": produced_total,
            "events_pending_during_outage": pending,
            "events_delivered_during_outage": delivered_during_outage,
            "events_delivered": tap.delivered,
            "duplicate_events": sum(n - 1 for n in tap.duplicates.values()),
            "backlog_delivered_after_s": round(delivery_s, 2),
            "events_pending_after": pending_after,
        }
    )
    assert statuses == [201] * CREATES + [200, 204]
    assert pending == len(expected) and produced == len(expected) + 1
    assert delivered_during_outage == 0
    assert tap.duplicates == {}
    assert tap.delivered == produced_total == len(expected) + 1
    assert tap.subjects[1:] == expected, "published in commit order"
    assert pending_after == 0
