"""RegistryService over a real SQLite store: declared vs registered, reloads, ports."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from control_plane.model import Integration
from control_plane.problems import RegistryError
from control_plane.registry.service import DeclaredConflict, RegistryService
from control_plane.registry.view import RegistryView
from control_plane.store.protocol import ConflictError
from control_plane.store.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parents[3]

DOC: dict[str, Any] = {"id": "crm", "kind": "http", "upstream": "https://crm.example.com"}


async def test_declared_mutations_are_refused(service: RegistryService) -> None:
    for attempt in (
        service.update(
            "stripe", {"id": "stripe", "kind": "stripe", "upstream": "https://x.example.com"}, 0
        ),
        service.delete("stripe"),
        service.create({**DOC, "id": "stripe"}),
    ):
        with pytest.raises(DeclaredConflict, match="edit the file"):
            await attempt
    assert service.view.items["stripe"].source == "declared"


async def test_registered_lifecycle_ports_and_notifications(service: RegistryService) -> None:
    seen: list[RegistryView] = []
    service.subscribe(seen.append)
    created = await service.create(DOC)
    assert created.version == 1
    assert created.source == "registered"
    assert created.listen_port is not None and 12000 <= created.listen_port <= 12100
    updated = await service.update("crm", {**DOC, "description": "v2"}, expected_version=1)
    assert updated.version == 2
    assert updated.listen_port == created.listen_port, "assigned port is stable"
    with pytest.raises(ConflictError):
        await service.update("crm", {**DOC, "description": "stale"}, expected_version=1)
    assert service.view.items["crm"].description == "v2", "a stale write changed nothing"
    await service.delete("crm", expected_version=2)
    assert "crm" not in service.view.items
    assert len(seen) == 3
    assert [v.generation for v in seen] == sorted(v.generation for v in seen)
    events = await service.store.pending_events()
    assert [e.type for e in events] == [
        "integration.registered",
        "integration.updated",
        "integration.deregistered",
    ]


async def test_explicit_port_clash_is_a_conflict(service: RegistryService) -> None:
    service.ports.port_range = (10000, 12100)  # 10001 in range: the clash is what is tested
    with pytest.raises(ConflictError, match="10001"):
        await service.create({**DOC, "listen_port": 10001})  # stripe's declared port
    assert "crm" not in service.view.items


async def test_invalid_document_lists_problems(service: RegistryService) -> None:
    with pytest.raises(RegistryError) as info:
        await service.create({"id": "x", "kind": "nope", "upstream": 5})
    assert {p.pointer for p in info.value.problems} >= {"/kind", "/upstream"}


async def test_invalid_file_keeps_last_good_registry(service: RegistryService) -> None:
    assert service.integrations_file is not None
    before = dict(service.view.items)
    service.integrations_file.write_text("integrations:\n  - id: x\n    kind: ftp\n")
    result = await service.reload_file()
    assert not result.ok
    assert any(p.line == 3 for p in result.problems)
    assert dict(service.view.items) == before
    assert service.view.file_error is not None

    text = (ROOT / "config" / "integrations.yaml").read_text()
    service.integrations_file.write_text(text.replace("id: redis\n", "id: cache\n"))
    result = await service.reload_file()
    assert result.ok and result.changed
    assert "cache" in service.view.items and "redis" not in service.view.items
    assert service.view.file_error is None


async def test_file_watch_picks_up_changes(service: RegistryService) -> None:
    assert service.integrations_file is not None
    watcher = asyncio.create_task(service.watch_file(interval=0.05))
    try:
        text = service.integrations_file.read_text()
        service.integrations_file.write_text(text.replace("enabled: false", "enabled: true") + "")
        service.integrations_file.write_text(text.replace("id: email\n", "id: mailer\n"))
        for _ in range(100):
            if "mailer" in service.view.items:
                break
            await asyncio.sleep(0.05)
        assert "mailer" in service.view.items
    finally:
        watcher.cancel()


async def test_declared_ports_persist_across_restarts(tmp_path: Path) -> None:
    (tmp_path / "integrations.yaml").write_text(
        "integrations:\n  - {id: a, kind: http, upstream: 'https://a.example.com'}\n"
        "  - {id: b, kind: http, upstream: 'https://b.example.com'}\n"
    )
    ports = []
    for _ in range(2):
        store = SqliteStore(tmp_path / "registry.sqlite3")
        await store.open()
        registry = RegistryService(store, integrations_file=tmp_path / "integrations.yaml")
        await registry.start()
        ports.append({k: v.listen_port for k, v in registry.view.items.items()})
        await store.close()
    assert ports[0] == ports[1] == {"a": 10000, "b": 10001}


async def test_precheck_refuses_what_envoy_could_not_take(tmp_path: Path) -> None:
    """What Envoy could not take is refused before anything is stored, so it can never
    block the configuration pushes that follow."""
    import dataclasses

    from control_plane.problems import Problem
    from control_plane.registry.loader import integration_from_document
    from control_plane.xds.cache import SnapshotCache
    from control_plane.xds.pipeline import ConfigPipeline

    pipeline = ConfigPipeline(SnapshotCache(), data_dir=tmp_path / "data", environ={})
    item = integration_from_document({**DOC, "listen_port": 10000}, source="registered")
    pipeline.precheck([item])  # a good one passes
    endless = item.replace(policies=dataclasses.replace(item.policies, timeout=1e15))
    with pytest.raises(RegistryError, match="Envoy configuration"):
        pipeline.precheck([endless])

    def refuse(items: Sequence[Integration]) -> None:
        if any(i.id == "refused" for i in items):
            raise RegistryError([Problem("", "no")], "invalid integration")

    store = SqliteStore(tmp_path / "registry.sqlite3")
    await store.open()
    try:
        registry = RegistryService(store, integrations_file=None, precheck=refuse)
        registry.subscribe(pipeline.apply)
        await registry.start()
        with pytest.raises(RegistryError):
            await registry.create({**DOC, "id": "refused"})
        assert await store.list() == []
        assert await store.pending_events() == []
        assert await store.port_assignments() == {}
        with pytest.raises(RegistryError, match="longer than Envoy accepts"):
            await registry.create({**DOC, "policies": {"timeout": "99999999999h"}})
        created = await registry.create(DOC)
        assert pipeline.state.error is None
        assert pipeline.state.snapshot_version is not None
        assert created.id in registry.view.items
    finally:
        await store.close()
