"""Fixtures of the fault suite: the figures ledger, and servers a test may stop and start.

``measure("<fault key>")`` hands a test the dict it fills with what it measured; at teardown
the figures are merged into the ledger (see ``ledger.py``) with the test's outcome, so the
report never shows a failed run's numbers as a pass.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator

import pytest

from tests.e2e.faults.catalogue import FAULTS
from tests.e2e.faults.ledger import Figures, ledger_path, write_entry
from tests.support.postgres import PostgresServer, PostgresUnavailable
from tests.support.redis_server import RedisServer

_OUTCOME = pytest.StashKey[str]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        item.stash[_OUTCOME] = report.outcome
    return report


@pytest.fixture
def measure(request: pytest.FixtureRequest) -> Iterator[Callable[[str], Figures]]:
    recorded: dict[str, Figures] = {}

    def figures_for(fault: str) -> Figures:
        assert fault in FAULTS, f"unknown fault key {fault!r} (see catalogue.py)"
        return recorded.setdefault(fault, {})

    yield figures_for
    outcome = request.node.stash.get(_OUTCOME, "unknown")
    for fault, figures in recorded.items():
        write_entry(
            ledger_path(),
            fault,
            {"test": request.node.nodeid, "outcome": outcome, "figures": figures},
        )


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL cluster of this test's own, which the test may stop and start."""
    try:
        server = PostgresServer()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    try:
        server.start()
        yield server
    finally:
        server.stop(remove=True)


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own; ``stop()``/``start()`` keep its port."""
    try:
        server = RedisServer()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    server.start()
    try:
        yield server
    finally:
        server.remove()
