"""Equal registries give equal snapshot versions on every replica, whatever its data
directory (regression: the access-log and cache paths under each replica's data dir entered
the listeners, so two replicas of one registry served different versions)."""

from __future__ import annotations

import json
from pathlib import Path

from google.protobuf import json_format  # type: ignore[import-untyped]

from control_plane.registry.view import RegistryView
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.pipeline import ConfigPipeline
from control_plane.xds.resources import LISTENER
from control_plane.xds.snapshot import Snapshot
from tests.unit.test_xds.test_translate.cases import CASES, EXAMPLE_SECRETS

EXAMPLE = next(case for case in CASES if case.name == "example")


async def _served(data_dir: Path) -> Snapshot:
    pipeline = ConfigPipeline(SnapshotCache(), data_dir=data_dir, environ=EXAMPLE_SECRETS)
    items = {i.id: i for i in EXAMPLE.integrations()}
    await pipeline.apply(RegistryView(items=items, generation=1))
    snapshot = pipeline.cache.snapshot
    assert snapshot is not None and pipeline.state.error is None
    return snapshot


async def test_two_data_dirs_give_the_same_versions(tmp_path: Path) -> None:
    a = await _served(tmp_path / "replica-a")
    b = await _served(tmp_path / "a-much-longer-directory-name" / "replica-b")
    assert a.version == b.version
    assert a.versions == b.versions
    # ... while each replica's Envoy is still told its own directories.
    dump_a = json.dumps(
        [json_format.MessageToDict(m) for m in a.get(LISTENER).values()], sort_keys=True
    )
    assert str(tmp_path / "replica-a") in dump_a
    assert "a-much-longer-directory-name" not in dump_a


async def test_a_registry_change_still_changes_the_version(tmp_path: Path) -> None:
    before = await _served(tmp_path / "a")
    pipeline = ConfigPipeline(SnapshotCache(), data_dir=tmp_path / "b", environ=EXAMPLE_SECRETS)
    items = {i.id: i for i in EXAMPLE.integrations()}
    first = sorted(items)[0]
    items[first] = items[first].replace(enabled=False)  # its listener and cluster go
    await pipeline.apply(RegistryView(items=items, generation=1))
    after = pipeline.cache.snapshot
    assert after is not None
    assert after.version != before.version
