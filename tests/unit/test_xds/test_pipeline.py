"""The incremental pipeline: per-integration translations and snapshots built on the last one
give exactly what translating the whole registry from scratch gives."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from control_plane.model import Integration, Policies
from control_plane.registry.credentials import resolve_credentials
from control_plane.registry.view import RegistryView
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.pipeline import ConfigPipeline
from control_plane.xds.resources import ADS_ORDER, CLUSTER, ENDPOINT, LISTENER, SECRET
from control_plane.xds.snapshot import Snapshot
from control_plane.xds.translate import translate
from control_plane.xds.translate.endpoints import FLEET_CLUSTER, fleet_assignment
from tests.unit.test_xds.test_translate.cases import CASES, EXAMPLE_SECRETS


def _pool() -> dict[str, Integration]:
    """Every integration of the translator's cases: each kind, TLS, mTLS, EDS, cache."""
    pool: dict[str, Integration] = {}
    for case in CASES:
        for item in case.integrations():
            pool.setdefault(item.id, item)
    # A disabled one may be enabled by a test: it needs a port like the others.
    return {k: v if v.listen_port else v.replace(listen_port=11999) for k, v in pool.items()}


def _environ() -> dict[str, str]:
    env = {ref.removeprefix("env:"): str(v) for ref, v in EXAMPLE_SECRETS.items()}
    env["CRM_TOKEN"] = "crm-token"
    return env


def _serialized(resources: Any) -> dict[str, dict[str, bytes]]:
    return {
        type_url: {
            name: m.SerializeToString(deterministic=True)
            for name, m in resources.get(type_url, {}).items()
        }
        for type_url in ADS_ORDER
    }


def _assert_from_scratch(pipeline: ConfigPipeline, view: RegistryView) -> None:
    """The served snapshot and warnings equal those of a full translation of ``view``."""
    resolved = resolve_credentials(view.items.values(), pipeline.environ)
    expected = translate(list(view.items.values()), resolved.values, pipeline.options())
    # Beside the integrations' resources: the fleet's membership (the bootstrap's local
    # cluster), always served.
    expected.resources[ENDPOINT][FLEET_CLUSTER] = fleet_assignment(pipeline.fleet_members)
    scratch = Snapshot.build(expected.resources, versions=expected.versions)
    served = pipeline.cache.snapshot
    assert served is not None
    assert served.version == scratch.version
    assert served.versions == scratch.versions
    assert _serialized(served.resources) == _serialized(expected.resources)
    missing = [f"{ref}: {why}" for ref, why in sorted(resolved.missing.items())]
    assert pipeline.state.warnings == missing + expected.warnings
    assert pipeline.state.error is None


def _pipeline(tmp_path: Path, environ: dict[str, str]) -> ConfigPipeline:
    pipeline = ConfigPipeline(SnapshotCache(), data_dir=tmp_path / "data", environ=environ)
    # The pool holds scope-global integrations (their shared cluster integration_ratelimit
    # comes from any of them: incremental must still equal from scratch).
    pipeline.ratelimit_address = "127.0.0.1:8081"
    return pipeline


async def test_unchanged_integrations_are_not_translated_again(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path, _environ())
    items = _pool()
    await pipeline.apply(RegistryView(items=dict(items), generation=1))
    first = pipeline.cache.snapshot
    assert first is not None
    assert pipeline.state.translated == sum(1 for i in items.values() if i.enabled)

    # Same definitions, new objects and new bookkeeping (what a store reload gives).
    reloaded = {k: v.replace(version=v.version + 7, source="registered") for k, v in items.items()}
    await pipeline.apply(RegistryView(items=reloaded, generation=2))
    assert pipeline.state.translated == 0
    assert pipeline.cache.snapshot is not None
    assert pipeline.cache.snapshot.version == first.version

    stripe = items["stripe"]
    items["stripe"] = stripe.replace(policies=Policies(timeout=stripe.policies.timeout + 1))
    await pipeline.apply(RegistryView(items=dict(items), generation=3))
    assert pipeline.state.translated == 1
    second = pipeline.cache.snapshot
    assert second is not None
    # Resources of untouched integrations are the very same frozen copies.
    assert second.get(CLUSTER)["auth0"] is first.get(CLUSTER)["auth0"]
    assert second.get(LISTENER)["redis"] is first.get(LISTENER)["redis"]
    assert second.get(CLUSTER)["stripe"] is not first.get(CLUSTER)["stripe"]
    _assert_from_scratch(pipeline, RegistryView(items=dict(items), generation=3))


async def test_a_credential_value_change_retranslates_only_its_integration(
    tmp_path: Path,
) -> None:
    environ = _environ()
    pipeline = _pipeline(tmp_path, environ)
    view = RegistryView(items=_pool(), generation=1)
    await pipeline.apply(view)
    environ["CRM_TOKEN"] = "rotated"
    pipeline.apply_current()
    assert pipeline.state.translated == 1
    _assert_from_scratch(pipeline, view)
    del environ["CRM_TOKEN"]
    pipeline.apply_current()
    assert pipeline.state.translated == 1
    assert any("env:CRM_TOKEN" in w for w in pipeline.state.warnings)
    _assert_from_scratch(pipeline, view)


async def test_a_token_refresh_changes_only_that_integrations_token_secret(
    tmp_path: Path,
) -> None:
    pipeline = _pipeline(tmp_path, _environ())
    view = RegistryView(items=_pool(), generation=1)
    await pipeline.apply(view)
    first = pipeline.cache.snapshot
    assert first is not None and first.get(SECRET)["token/auth0"] is not None
    pipeline.set_token("auth0", "minted-1")
    second = pipeline.cache.snapshot
    assert second is not None and pipeline.state.translated == 1
    changed = {
        (type_url, name)
        for type_url in ADS_ORDER
        for name, version in second.versions.get(type_url, {}).items()
        if first.versions.get(type_url, {}).get(name) != version
    }
    assert changed == {(SECRET, "token/auth0")}
    token = second.get(SECRET)["token/auth0"].generic_secret.secret.inline_bytes
    assert token == b"Bearer minted-1"
    _assert_from_scratch(pipeline, view)
    # Withdrawn (expired, no successor): the secret is emptied, nothing else changes.
    pipeline.set_token("auth0", None)
    third = pipeline.cache.snapshot
    assert third is not None
    assert third.get(SECRET)["token/auth0"].generic_secret.secret.inline_bytes == b""
    assert third.versions[CLUSTER] == first.versions[CLUSTER]
    _assert_from_scratch(pipeline, view)


async def test_a_port_clash_keeps_the_previous_snapshot(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path, _environ())
    items = _pool()
    await pipeline.apply(RegistryView(items=dict(items), generation=1))
    before = pipeline.cache.snapshot
    items["cache"] = items["cache"].replace(listen_port=items["stripe"].listen_port)
    await pipeline.apply(RegistryView(items=dict(items), generation=2))
    assert pipeline.state.error is not None and "share listen_port" in pipeline.state.error
    assert pipeline.cache.snapshot is before


OPERATIONS = (
    *("timeout", "toggle", "describe", "port", "drop", "add"),
    *("env", "reset", "rotate", "endpoints", "address", "noop"),
)


@pytest.mark.parametrize("seed", range(6))
async def test_random_changes_match_a_from_scratch_build(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    environ = _environ()
    pipeline = _pipeline(tmp_path, environ)
    pool = _pool()
    items = dict(pool)
    generation = 1
    await pipeline.apply(RegistryView(items=dict(items), generation=generation))
    for _ in range(40):
        op = rng.choice(OPERATIONS)
        ident = rng.choice(sorted(items))
        item = items[ident]
        if op == "timeout":
            timeout = rng.choice([1.0, 2.5, 15.0, 30.0])
            items[ident] = item.replace(policies=Policies(timeout=timeout))
        elif op == "toggle":
            items[ident] = item.replace(enabled=not item.enabled)
        elif op == "describe":
            items[ident] = item.replace(description=f"d{rng.random()}")
        elif op == "port":
            used = {i.listen_port for i in items.values()}
            items[ident] = item.replace(
                listen_port=rng.choice([p for p in range(12000, 12050) if p not in used])
            )
        elif op == "drop" and len(items) > 1:
            del items[ident]
        elif op == "add":
            missing = sorted(set(pool) - set(items))
            if missing:
                # Its original port may be taken by now: give it a fresh one.
                used = {i.listen_port for i in items.values()}
                port = next(p for p in range(13000, 14000) if p not in used)
                items[missing[0]] = pool[missing[0]].replace(listen_port=port)
        elif op == "env":
            name = rng.choice(sorted({*_environ(), "RETIRED_KEY"}))
            if rng.random() < 0.3:
                environ.pop(name, None)
            else:
                environ[name] = f"value-{rng.randint(0, 3)}"
        elif op == "reset":
            pipeline.reset_cluster(ident)
        elif op == "rotate":
            pipeline.rotate_cache(ident)
        elif op == "endpoints":
            count = rng.randint(0, 3)
            pipeline.set_endpoints("billing", [(f"10.1.0.{n}", 8080) for n in range(count)])
        elif op == "address":
            pipeline.listen_address = rng.choice(["127.0.0.1", "127.0.0.2"])
        generation += 1
        view = RegistryView(items=dict(items), generation=generation)
        await pipeline.apply(view)
        _assert_from_scratch(pipeline, view)
