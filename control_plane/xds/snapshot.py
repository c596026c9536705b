"""Immutable, checked xDS snapshots with content-hash versions.

A snapshot is the complete set of resources a node should run. Versions are content hashes
(sha256 of the deterministic protobuf encoding), so the same registry always yields the same
version, a restart of the control plane does not force Envoy to re-apply anything, and a
delta client's ``initial_resource_versions`` can be compared directly after a reconnect.

Building is incremental when the caller passes the previous snapshot: a resource that *is*
(by identity) the previous snapshot's own frozen copy under the same name is reused with its
version and its references, so one changed integration among thousands costs one copy, one
hash and one reference walk. The result is the same snapshot a from-scratch build gives.
"""

from __future__ import annotations

import dataclasses
import hashlib
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from google.protobuf.message import Message  # type: ignore[import-untyped]

from control_plane.xds.resources import (
    ADS_ORDER,
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ROUTE,
    SECRET,
    References,
    message_type_url,
    resource_name,
    resource_references,
)

__all__ = ["Changes", "InconsistentSnapshot", "Snapshot", "content_version", "interned"]

_KIND = {
    CLUSTER: "clusters",
    ENDPOINT: "endpoints",
    LISTENER: "listeners",
    ROUTE: "routes",
    SECRET: "secrets",
}
_REFERRER = {ENDPOINT: "clusters", ROUTE: "listeners", SECRET: "clusters/listeners"}
# The types whose resources name other resources (see resources.references).
_REFERRING = (CLUSTER, LISTENER)
# How many subscriptions' versions one snapshot remembers (Snapshot.version_for):
# streams alike share a few; each entry holds its names, so the bound is small.
_VERSION_CACHE_MAX = 32
# Names a remembered subscription may hold beyond the type's resources (being added).
_SPARE_NAMES = 64


def content_version(message: Message) -> str:
    """The version of one resource: sha256 of its deterministic serialization.

    ``deterministic=True`` sorts map entries, so equal messages hash equally.
    """
    return hashlib.sha256(message.SerializeToString(deterministic=True)).hexdigest()


def _frozen(message: Message, version: str | None = None) -> tuple[Message, str]:
    """A copy of ``message`` and its version: ``version`` if given, else its content hash.

    Hashed ones are copied by parsing the deterministic encoding the hash needs anyway: one
    serialization instead of a copy and a serialization (the same message either way)."""
    if version:
        copy = type(message)()
        copy.CopyFrom(message)
        return copy, version
    encoded = message.SerializeToString(deterministic=True)
    return type(message).FromString(encoded), hashlib.sha256(encoded).hexdigest()


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    # Bounded, the oldest entry out first: a node cycling through subscriptions can take
    # the slots only until the next ones are needed.
    if len(cache) >= _VERSION_CACHE_MAX:
        del cache[next(iter(cache))]
    cache[key] = value


def _digest(lines: Iterable[str]) -> str:
    # One update over the joined text: the same digest as line by line, a lot faster.
    return hashlib.sha256("".join(f"{line}\n" for line in lines).encode()).hexdigest()


# Equal subscriptions as one object: streams subscribed alike then find their versions in
# Snapshot.version_cache by identity, not by comparing every name (N streams x M names).
# Keyed by hash, the value weakly held: a subscription no stream holds any more is gone.
_SUBSCRIPTIONS: weakref.WeakValueDictionary[int, frozenset[str]] = weakref.WeakValueDictionary()


def interned(names: frozenset[str]) -> frozenset[str]:
    """The one object for subscriptions equal to ``names`` (``names`` itself if first)."""
    key = hash(names)
    held = _SUBSCRIPTIONS.get(key)
    if held is not None and held == names:
        return held
    if held is None:
        _SUBSCRIPTIONS[key] = names
    return names  # a hash shared with another subscription: not interned, still correct


class Changes(NamedTuple):
    """What :meth:`Snapshot.changes_since` finds, for one type."""

    changed: tuple[str, ...]  # new, or another version
    removed: tuple[str, ...]


class InconsistentSnapshot(ValueError):
    """A snapshot references endpoints, route tables or secrets it does not contain.

    Serving it would leave Envoy's clusters/listeners warming forever (or until
    ``initial_fetch_timeout``), so it is refused before it reaches any node.
    """

    def __init__(self, missing: Mapping[str, frozenset[str]]) -> None:
        self.missing: dict[str, frozenset[str]] = {t: n for t, n in missing.items() if n}
        parts = [
            f"missing {_KIND[type_url]} {sorted(names)} referenced by {_REFERRER[type_url]}"
            for type_url, names in self.missing.items()
        ]
        super().__init__("inconsistent snapshot: " + "; ".join(parts))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Resources by type URL and name, each with its content-hash version.

    Build it with :meth:`build` (checked) or :meth:`unchecked`; both copy the messages so
    later changes by the caller cannot alter a snapshot that is being served. The copies
    are never modified afterwards: that is what lets a later build reuse them.
    """

    resources: Mapping[str, Mapping[str, Message]]
    versions: Mapping[str, Mapping[str, str]]
    version: str
    # Set by build(): the (immutable) snapshot passed check(), so it need not run again.
    checked: bool = field(default=False, compare=False)
    # What each cluster and listener references, filled on first use (a cache of a pure
    # function of the frozen resources, so the snapshot stays immutable in every way that
    # shows) and handed on to the next incremental build for the resources it reuses.
    reference_cache: dict[tuple[str, str], References] = field(
        default_factory=dict, compare=False, repr=False
    )
    # version_for's answers, by type URL and subscription (None: all of the type): every
    # stream subscribed alike asks the same question of the same snapshot at each push, so
    # a change pushed to N streams digests each subscription once, not N times.
    version_cache: dict[tuple[str, frozenset[str] | None], str] = field(
        default_factory=dict, compare=False, repr=False
    )
    # changes_since's answers, by type URL and the identity of the versions compared with
    # (held in the entry, so the identity is not reused while cached).
    change_cache: dict[tuple[str, int], tuple[Mapping[str, str], Changes]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def build(
        cls,
        resources: Mapping[str, Mapping[str, Message]],
        previous: Snapshot | None = None,
        versions: Mapping[str, Mapping[str, str]] | None = None,
    ) -> Snapshot:
        """A snapshot of ``resources``; raises :class:`InconsistentSnapshot` if incomplete.

        With ``previous``, a message that is ``previous``'s own copy of the resource of the
        same type and name is reused without copying, hashing or walking it again.
        """
        snapshot = cls.unchecked(resources, previous, versions)
        snapshot.check()
        return dataclasses.replace(snapshot, checked=True)

    @classmethod
    def unchecked(
        cls,
        resources: Mapping[str, Mapping[str, Message]],
        previous: Snapshot | None = None,
        versions: Mapping[str, Mapping[str, str]] | None = None,
    ) -> Snapshot:
        """A snapshot without the reference check (tests, partial views). ``versions``:
        versions given for some resources instead of their content hash — the translator's
        replica-neutral ones for listeners that name node-local paths, so equal registries
        give equal versions on every replica."""
        given = versions or {}
        frozen: dict[str, Mapping[str, Message]] = {}
        by_type: dict[str, Mapping[str, str]] = {}
        reference_cache: dict[tuple[str, str], References] = {}
        for type_url, by_name in resources.items():
            if type_url not in ADS_ORDER:
                raise ValueError(f"unsupported xDS type {type_url!r}")
            before = previous.get(type_url) if previous is not None else {}
            before_versions = previous.versions.get(type_url, {}) if previous is not None else {}
            before_refs = previous.reference_cache if previous is not None else {}
            given_versions = given.get(type_url, {})
            copies: dict[str, Message] = {}
            type_versions: dict[str, str] = {}
            for name, message in sorted(by_name.items()):
                if before.get(name) is message:
                    # Validated, copied and hashed when ``previous`` was built.
                    copies[name] = message
                    type_versions[name] = before_versions[name]
                    refs = before_refs.get((type_url, name))
                    if refs is not None:
                        reference_cache[(type_url, name)] = refs
                    continue
                if message_type_url(message) != type_url:
                    raise ValueError(f"{name!r}: {message_type_url(message)} under {type_url}")
                if resource_name(message) != name:
                    raise ValueError(f"resource keyed {name!r} is named {resource_name(message)!r}")
                copies[name], type_versions[name] = _frozen(message, given_versions.get(name))
            frozen[type_url] = MappingProxyType(copies)
            by_type[type_url] = MappingProxyType(type_versions)
        for type_url in ADS_ORDER:
            frozen.setdefault(type_url, MappingProxyType({}))
            by_type.setdefault(type_url, MappingProxyType({}))
        version = _digest(
            f"{type_url} {name} {ver}"
            for type_url in ADS_ORDER
            for name, ver in sorted(by_type[type_url].items())
        )
        return cls(
            MappingProxyType(frozen),
            MappingProxyType(by_type),
            version,
            reference_cache=reference_cache,
        )

    def subset(
        self,
        names: Mapping[str, Iterable[str]],
        extra: Mapping[str, Mapping[str, Message]] | None = None,
    ) -> Snapshot:
        """The part of this snapshot holding only ``names`` (by type URL), checked.

        Shares this snapshot's frozen messages, versions and reference walks: nothing is
        copied or hashed again but the overall version. A workload's snapshot (the shared
        topology) is the subset of its integrations' resources, so equal registries give
        every replica equal workload versions too. ``extra``: resources of the subset's
        own (copied and hashed), replacing any of the same name. Raises
        :class:`InconsistentSnapshot` when the subset references what it leaves out.
        """
        frozen: dict[str, Mapping[str, Message]] = {}
        by_type: dict[str, Mapping[str, str]] = {}
        reference_cache: dict[tuple[str, str], References] = {}
        for type_url in ADS_ORDER:
            messages, versions = self.get(type_url), self.versions.get(type_url, {})
            wanted = sorted(set(names.get(type_url, ())) & set(messages))
            own = {n: messages[n] for n in wanted}
            own_versions = {n: versions[n] for n in wanted}
            for name, message in (extra or {}).get(type_url, {}).items():
                own[name], own_versions[name] = _frozen(message)
            frozen[type_url] = MappingProxyType(dict(sorted(own.items())))
            by_type[type_url] = MappingProxyType(dict(sorted(own_versions.items())))
            for name in wanted:
                if name in (extra or {}).get(type_url, {}):
                    continue
                refs = self.reference_cache.get((type_url, name))
                if refs is not None:
                    reference_cache[(type_url, name)] = refs
        version = _digest(
            f"{type_url} {name} {ver}"
            for type_url in ADS_ORDER
            for name, ver in by_type[type_url].items()
        )
        part = Snapshot(
            MappingProxyType(frozen),
            MappingProxyType(by_type),
            version,
            reference_cache=reference_cache,
        )
        part.check()
        # Walks done for the subset are the parent's too (same frozen messages).
        for key, refs in part.reference_cache.items():
            self.reference_cache.setdefault(key, refs)
        return dataclasses.replace(part, checked=True)

    def get(self, type_url: str) -> Mapping[str, Message]:
        """Resources of one type by name (empty for a type the snapshot does not hold)."""
        return self.resources.get(type_url, MappingProxyType({}))

    def resource_version(self, type_url: str, name: str) -> str | None:
        return self.versions.get(type_url, {}).get(name)

    def version_for(self, type_url: str, names: Iterable[str] | None = None) -> str:
        """The version of what a node receives for one type: all of it, or only ``names``.

        Used as a SotW ``version_info``: it changes exactly when the resources a
        subscription sees change, so unrelated changes cause no push.
        """
        versions = self.versions.get(type_url, {})
        subscription: frozenset[str] | set[str] | None
        if names is None or isinstance(names, (frozenset, set)):
            subscription = names
        else:
            subscription = set(names)
        # Remembered for the subscriptions streams share (frozen, as the streams keep them)
        # and only when no larger than the type itself: a node's junk names cost it a walk
        # of the smaller side each time, never memory here.
        key: tuple[str, frozenset[str] | None] | None = None
        if subscription is None or (
            isinstance(subscription, frozenset)
            and len(subscription) <= self.subscription_limit(type_url)
        ):
            key = (type_url, subscription)
            cached = self.version_cache.get(key)
            if cached is not None:
                return cached
        if subscription is None:
            selected = sorted(versions)
        elif len(subscription) > len(versions):
            selected = sorted(n for n in versions if n in subscription)
        else:
            selected = sorted(n for n in subscription if n in versions)
        version = _digest(f"{name} {versions[name]}" for name in selected)
        if key is not None:
            _remember(self.version_cache, key, version)
        return version

    def subscription_limit(self, type_url: str) -> int:
        """The most names a subscription to ``type_url`` may hold and still be remembered
        (:meth:`version_for`): the type's resources, and some being added."""
        return len(self.versions.get(type_url, {})) + _SPARE_NAMES

    def changes_since(self, type_url: str, before: Mapping[str, str]) -> Changes:
        """How one type's versions differ from ``before`` (another snapshot's versions of
        it): the names whose version is new or different, and the names only ``before``
        holds, each sorted.

        Every stream that held exactly ``before`` needs just these names compared, so a
        change pushed to N such streams walks the type once, not N times.
        """
        key = (type_url, id(before))
        hit = self.change_cache.get(key)
        if hit is not None and hit[0] is before:
            return hit[1]
        after = self.versions.get(type_url, {})
        changes = Changes(
            tuple(sorted(n for n, v in after.items() if before.get(n) != v)),
            tuple(sorted(n for n in before if n not in after)),
        )
        _remember(self.change_cache, key, (before, changes))
        return changes

    def references(self) -> References:
        """Names the clusters and listeners reference (the union over every resource).

        Each resource's references are computed once and cached: walking a resource (every
        nested message, every ``Any`` unpacked) is by far the costliest part of a build.
        """
        endpoints: set[str] = set()
        routes: set[str] = set()
        secrets: set[str] = set()
        for type_url in _REFERRING:
            for name, message in self.get(type_url).items():
                refs = self.reference_cache.get((type_url, name))
                if refs is None:
                    refs = resource_references(type_url, message)
                    self.reference_cache[(type_url, name)] = refs
                endpoints |= refs.endpoints
                routes |= refs.routes
                secrets |= refs.secrets
        return References(frozenset(endpoints), frozenset(routes), frozenset(secrets))

    def missing(self) -> dict[str, frozenset[str]]:
        """Referenced names absent from the snapshot, by type URL (only non-empty sets)."""
        missing: dict[str, frozenset[str]] = {}
        for type_url, names in self.references().by_type().items():
            absent = names - set(self.get(type_url))
            if absent:
                missing[type_url] = frozenset(absent)
        return missing

    def consistent(self) -> bool:
        """True when every referenced endpoint set, route table and secret is present."""
        return not self.missing()

    def check(self) -> None:
        """Raise :class:`InconsistentSnapshot` naming every missing reference."""
        if self.checked:
            return
        missing = self.missing()
        if missing:
            raise InconsistentSnapshot(missing)
