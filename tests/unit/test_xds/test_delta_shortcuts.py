"""The delta stream's shortcuts answer exactly what the full comparison answers.

A stream whose client holds exactly a snapshot's resources skips a type whose version did
not change, and compares only what changed since then when it did
(:meth:`Snapshot.changes_since`). Random runs of snapshots, ACKs, NACKs and subscription
changes drive two streams side by side, one with the shortcuts and one that forgets what
they rest on before every wake-up (so it always compares every resource); their responses
and what each believes its client holds must be the same at every step.
"""

from __future__ import annotations

import gc
from typing import Any

from envoy.config.listener.v3 import listener_pb2
from envoy.service.discovery.v3 import discovery_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from control_plane.xds import snapshot as snapshot_module
from control_plane.xds.resources import ADS_ORDER, CLUSTER, ENDPOINT, LISTENER
from control_plane.xds.snapshot import Snapshot
from control_plane.xds.status import XdsStatus
from control_plane.xds.stream_state import DeltaState
from tests.support.xds import assignment, eds_cluster

NAMES = ("a", "b", "c", "d")
TYPES = (CLUSTER, ENDPOINT, LISTENER)


class FullComparison(DeltaState):
    """The same stream, without what the shortcuts rest on: every wake-up compares all."""

    def responses(self, snapshot: Snapshot, dirty: set[str]) -> list[Any]:
        for state in self.types.values():
            state.synced, state.synced_map = None, None
        return super().responses(snapshot, dirty)


Variant = tuple[int | None, int | None, int | None]  # cluster, endpoints, listener


def _snapshot(variants: dict[str, Variant]) -> Snapshot:
    """Each name's cluster, endpoints and listener in its own variant (None: absent), so a
    type can change while the others do not."""
    resources: dict[str, dict[str, Any]] = {t: {} for t in ADS_ORDER}
    for name, (cluster_variant, endpoint_variant, listener_variant) in variants.items():
        if cluster_variant is not None:
            cluster = eds_cluster(name)
            cluster.connect_timeout.seconds = 1 + cluster_variant
            resources[CLUSTER][name] = cluster
        if endpoint_variant is not None:
            resources[ENDPOINT][name] = assignment(name, port=8080 + endpoint_variant)
        if listener_variant is not None:
            listener = listener_pb2.Listener(name=f"l-{name}")
            listener.address.socket_address.port_value = 10000 + listener_variant
            resources[LISTENER][f"l-{name}"] = listener
    return Snapshot.unchecked(resources)


def _same(variant: int | None) -> Variant:
    return variant, variant, variant


variant = st.one_of(st.none(), st.integers(0, 2))
snapshots = st.fixed_dictionaries({n: st.tuples(variant, variant, variant) for n in NAMES})
steps = st.lists(
    st.one_of(
        st.tuples(st.just("snapshot"), snapshots),
        # One resource changes, appears or goes: the usual change, the shortcuts' case.
        st.tuples(st.just("change"), st.tuples(st.sampled_from(NAMES), st.integers(0, 2), variant)),
        st.tuples(st.sampled_from(["ack", "nack"]), st.sampled_from(TYPES)),
        st.tuples(st.sampled_from(["subscribe", "unsubscribe"]), st.sampled_from(NAMES)),
    ),
    min_size=1,
    max_size=30,
)


def _seen(responses: list[Any]) -> list[tuple[Any, ...]]:
    return [
        (
            r.type_url,
            r.system_version_info,
            tuple((x.name, x.version, x.resource.value) for x in r.resources),
            tuple(r.removed_resources),
        )
        for r in responses
    ]


def _check(stream: DeltaState) -> None:
    """What both sides rest on: a client holds only what it subscribes to, and the frozen
    subscription is the current one."""
    for state in stream.types.values():
        if not state.wildcard:
            assert set(state.client) <= state.names
            assert state.subscription() == frozenset(state.names)


def _held(stream: DeltaState) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
    return {t: (dict(s.client), dict(s.nacked)) for t, s in stream.types.items()}


class _Side:
    def __init__(self, stream: DeltaState) -> None:
        self.stream = stream
        self.last: dict[str, str] = {}  # type URL -> the nonce of its latest response

    def wake(self, snapshot: Snapshot, dirty: set[str]) -> list[tuple[Any, ...]]:
        out = self.stream.responses(snapshot, dirty)
        for response in out:
            self.last[response.type_url] = response.nonce
        return _seen(out)

    def request(self, type_url: str, **fields: Any) -> set[str]:
        return self.stream.on_request(
            discovery_pb2.DeltaDiscoveryRequest(type_url=type_url, **fields)
        )


@settings(max_examples=300, deadline=None)
@given(first=snapshots, run=steps)
def test_shortcut_responses_equal_the_full_comparison(
    first: dict[str, Variant], run: list[tuple[str, Any]]
) -> None:
    sides = [
        _Side(DeltaState("n", XdsStatus())),
        _Side(FullComparison("n", XdsStatus())),
    ]
    variants = dict(first)
    snapshot = _snapshot(variants)
    for side in sides:
        for type_url in TYPES:
            subscribe = ["a", "b"] if type_url == ENDPOINT else []
            side.request(type_url, resource_names_subscribe=subscribe)
    first_answers = [side.wake(snapshot, set(TYPES)) for side in sides]
    assert first_answers[0] == first_answers[1]
    for op, arg in run:
        results: list[Any] = []
        dirty: set[str] = set()
        for side in sides:
            if op in ("snapshot", "change"):
                if side is sides[0]:
                    if op == "snapshot":
                        variants = dict(arg)
                    else:
                        name, kind, value = arg
                        changed = list(variants[name])
                        changed[kind] = value
                        variants[name] = (changed[0], changed[1], changed[2])
                    snapshot = _snapshot(variants)
                dirty = set(TYPES)
            elif op in ("ack", "nack"):
                nonce = side.last.get(arg, "")
                detail = {"error_detail": {"message": "refused"}} if op == "nack" else {}
                dirty = side.request(arg, response_nonce=nonce, **detail)
            else:
                dirty = side.request(ENDPOINT, **{f"resource_names_{op}": [arg]})
            results.append((side.wake(snapshot, set(dirty)), _held(side.stream)))
            _check(side.stream)
        assert results[0] == results[1], (op, arg)


def test_an_unchanged_type_is_skipped_and_a_change_compares_only_what_changed() -> None:
    stream = DeltaState("n", XdsStatus())
    before = _snapshot({"a": _same(0), "b": _same(0), "c": _same(0), "d": _same(None)})
    stream.on_request(discovery_pb2.DeltaDiscoveryRequest(type_url=CLUSTER))
    assert [len(r.resources) for r in stream.responses(before, {CLUSTER})] == [3]
    after = _snapshot({"a": _same(0), "b": _same(1), "c": _same(None), "d": _same(0)})
    assert stream.responses(before, {CLUSTER}) == []  # nothing new: skipped
    (response,) = stream.responses(after, {CLUSTER})
    assert [r.name for r in response.resources] == ["b", "d"]
    assert list(response.removed_resources) == ["c"]
    changes = after.changes_since(CLUSTER, before.versions[CLUSTER])
    assert changes.changed == ("b", "d") and changes.removed == ("c",)
    assert after.changes_since(CLUSTER, before.versions[CLUSTER]) is changes  # remembered


def test_version_for_is_remembered_per_subscription() -> None:
    snapshot = _snapshot({"a": _same(0), "b": _same(1), "c": _same(None), "d": _same(2)})
    everything = snapshot.version_for(ENDPOINT)
    some = snapshot.version_for(ENDPOINT, {"a", "c"})
    assert snapshot.version_for(ENDPOINT, ["c", "a"]) == some != everything
    assert snapshot.version_for(ENDPOINT, {"a"}) == some  # "c" is not in the snapshot
    assert snapshot.version_cache[(ENDPOINT, None)] == everything


def test_a_subscription_no_stream_holds_is_released() -> None:
    snapshot = _snapshot({"a": _same(0), "b": _same(0), "c": _same(None), "d": _same(None)})
    streams = []
    for k in range(50):
        stream = DeltaState(f"n{k}", XdsStatus())
        names = ["a", f"extra-{k}"]  # fifty different subscriptions
        stream.on_request(
            discovery_pb2.DeltaDiscoveryRequest(type_url=ENDPOINT, resource_names_subscribe=names)
        )
        stream.responses(snapshot, {ENDPOINT})
        streams.append(stream)
    held = {id(s.types[ENDPOINT].frozen) for s in streams}
    assert len(held) == 50
    del streams, stream, snapshot  # the snapshot's version cache holds some of them too
    gc.collect()
    assert not any(id(v) in held for v in snapshot_module._SUBSCRIPTIONS.values())


def test_junk_names_are_neither_frozen_nor_remembered() -> None:
    snapshot = _snapshot({"a": _same(0), "b": _same(0), "c": _same(None), "d": _same(None)})
    stream = DeltaState("n", XdsStatus())
    junk = [f"junk-{i}" for i in range(5000)]
    stream.on_request(
        discovery_pb2.DeltaDiscoveryRequest(
            type_url=ENDPOINT, resource_names_subscribe=["a", *junk]
        )
    )
    (response,) = stream.responses(snapshot, {ENDPOINT})
    assert [r.name for r in response.resources] == ["a"]
    assert stream.types[ENDPOINT].frozen is None
    assert all(len(key[1] or ()) <= 64 + 2 for key in snapshot.version_cache)
    # The answer is the same as for the names the snapshot holds.
    assert snapshot.version_for(ENDPOINT, set(junk) | {"a"}) == snapshot.version_for(
        ENDPOINT, {"a"}
    )
