"""Registry view → resolved credentials → translator → checked snapshot → xDS cache.

The one place where the registry becomes Envoy configuration. A view that fails to
translate or to pass the snapshot consistency check is *not* served: the previous snapshot
stays in force and the error is kept for the status API. Per-integration generations
(circuit-breaker reset, cache rotation) are persisted under the data dir so a restarted
control plane produces the very same snapshot version as before.

Incremental: one REST change among thousands of integrations must not re-translate, re-copy,
re-hash and re-walk all of them. The translator is pure and an integration's resources
depend only on that integration (every resource is named by its id; ``check_ports`` is the
one cross-integration rule), so the pipeline keeps each integration's translation keyed by
everything it depends on (:class:`_Translation`) and translates again only the integrations
whose key changed. The merged map equals ``translate`` of the whole view, resource for
resource and warning for warning. The memoized messages are then swapped for the snapshot's
own frozen copies, so the next ``Snapshot.build(..., previous=...)`` recognises the
unchanged ones by identity and copies, hashes and walks only what changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import operator
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import json_format  # type: ignore[import-untyped]

from control_plane.model import Integration
from control_plane.problems import Problem, RegistryError
from control_plane.registry.credentials import ResolvedCredentials, resolve_credentials
from control_plane.registry.view import RegistryView
from control_plane.registry.workloads import Workload
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.generations import Generations
from control_plane.xds.snapshot import InconsistentSnapshot, Snapshot
from control_plane.xds.translate import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ROUTE,
    SECRET,
    Resources,
    TranslateOptions,
    check_ports,
    translate,
)
from control_plane.xds.translate.endpoints import FLEET_CLUSTER, fleet_assignment, vetted_name

__all__ = ["ConfigPipeline", "Generations", "PipelineState"]

log = logging.getLogger(__name__)

# Bookkeeping that never reaches Envoy; every other field of an integration is part of its
# translation key, so a field added to the model later is covered without a change here.
# (Exact field values rather than ``to_document``: the document rounds durations to text.)
_META_FIELDS = frozenset({"version", "created_at", "updated_at", "source"})
_definition = operator.attrgetter(
    *(f.name for f in dataclasses.fields(Integration) if f.name not in _META_FIELDS)
)


def _fingerprint(value: bytes | str | None) -> bytes | None:
    """A digest of a credential value: the key must change with it, but never hold it."""
    if value is None:
        return None
    raw = value.encode("utf-8") if isinstance(value, str) else value
    return hashlib.sha256(raw).digest()


@dataclass(slots=True)
class _Translation:
    """``translate([item])`` and the inputs it was computed from (``key``)."""

    key: tuple[Any, ...]
    resources: Resources
    warnings: list[str]
    # Replica-neutral versions of the resources that name node-local paths (listeners).
    versions: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)


@dataclass(slots=True)
class PipelineState:
    snapshot_version: str | None = None
    registry_generation: int = -1
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    pushes: int = 0
    # Integrations translated again by the last successful apply (the others were reused).
    translated: int = 0


class ConfigPipeline:
    def __init__(
        self,
        cache: SnapshotCache,
        *,
        data_dir: Path,
        environ: Mapping[str, str],
        listen_address: str = "127.0.0.1",
        access_logs: bool = True,
        cache_root: Path | None = None,
        workloads: Callable[[], Sequence[Workload]] | None = None,
    ) -> None:
        self.cache = cache
        self.environ = environ
        self.data_dir = data_dir
        self.generations = Generations(data_dir / "generations.json")
        self.listen_address = listen_address
        # The shared topology names a directory of the application pods' Envoys here.
        self.cache_root = cache_root if cache_root is not None else data_dir / "http-cache"
        # The shared topology: every snapshot is also cut into one per workload.
        self.workloads = workloads
        # The fleet's size for ``scope: fleet`` rate limits (the bootstrap's local cluster):
        # the live members of this pod's fleet, and of each workload's (set_fleet_members).
        self.fleet_members = 1
        self.workload_members: dict[str, int] = {}
        self.access_log_dir = data_dir / "access-logs" if access_logs else None
        self.endpoints: dict[str, Sequence[tuple[str, int]]] = {}
        # Vetted resolution: accepted addresses by host name (``set_resolved``).
        self.resolved: dict[str, tuple[str, ...]] = {}
        # Token mode: the valid access token of each integration (``set_token``).
        self.tokens: dict[str, str] = {}
        self.ratelimit_address: str | None = None  # settings.ratelimit_address (global scope)
        self.state = PipelineState()
        self._view: RegistryView | None = None
        # Per-integration translations of the snapshot being served, and that snapshot.
        self._translations: dict[str, _Translation] = {}
        self._snapshot: Snapshot | None = None

    def options(self) -> TranslateOptions:
        return TranslateOptions(
            listen_address=self.listen_address,
            generations=dict(self.generations.cluster),
            cache_root=str(self.cache_root.resolve()),
            cache_generations=dict(self.generations.cache),
            access_log_dir=str(self.access_log_dir.resolve()) if self.access_log_dir else None,
            endpoints=dict(self.endpoints),
            resolved=dict(self.resolved),
            tokens=dict(self.tokens),
            ratelimit_address=self.ratelimit_address,
        )

    def cache_path(self, integration_id: str) -> Path:
        generation = self.generations.cache.get(integration_id, 0)
        return self.cache_root.resolve() / integration_id / str(generation)

    def precheck(self, items: Sequence[Integration]) -> None:
        """Raise RegistryError when ``items`` would not translate into a consistent snapshot.

        Runs before the registry stores anything. Credential values are stand-ins: only
        the shape of the configuration is checked here, never a secret.
        """
        stand_ins = {r.ref: "precheck" for item in items for r in item.credential_refs()}
        try:
            resources = translate(list(items), stand_ins, self.options()).resources
            Snapshot.build(resources)
            for by_name in resources.values():
                for message in by_name.values():
                    # JSON printing checks well-known types (Duration range, …) that
                    # binary serialization lets through and Envoy would reject.
                    json_format.MessageToJson(message)
        except (ValueError, InconsistentSnapshot, json_format.Error) as exc:
            raise RegistryError(
                [
                    Problem(
                        "",
                        f"cannot be turned into Envoy configuration: {exc}",
                        "change the value the message names",
                    )
                ],
                "invalid integration",
            ) from None

    async def apply(self, view: RegistryView) -> None:
        """Translate ``view`` and serve it; keep the last good snapshot on any error."""
        self._view = view
        self.apply_current()

    def apply_current(self) -> Snapshot | None:
        view = self._view
        if view is None:
            return None
        resolved = resolve_credentials(view.items.values(), self.environ, view.policy)
        if self.access_log_dir is not None:
            self.access_log_dir.mkdir(parents=True, exist_ok=True)
        for item in view.enabled():
            if item.policies.cache.enabled:
                self.cache_path(item.id).mkdir(parents=True, exist_ok=True)
        try:
            resources, versions, translation_warnings, fresh = self._translate(view, resolved)
            resources[ENDPOINT][FLEET_CLUSTER] = fleet_assignment(self.fleet_members)
            snapshot = Snapshot.build(resources, previous=self._snapshot, versions=versions)
            per_workload = self._per_workload(view, snapshot, fresh)
            self.cache.set_snapshot(snapshot)
            if per_workload is not None:
                self.cache.set_workload_snapshots(per_workload)
        except (ValueError, InconsistentSnapshot) as exc:
            self.state.error = str(exc)
            log.error(
                "configuration not pushed; Envoy keeps the previous one", extra={"error": str(exc)}
            )
            return None
        self._keep(fresh, snapshot)
        warnings = [f"{ref}: {why}" for ref, why in sorted(resolved.missing.items())]
        warnings.extend(
            f"{ident}: {ref} withheld ({why})"
            for ident, refused in sorted(resolved.withheld.items())
            for ref, why in sorted(refused.items())
        )
        warnings.extend(translation_warnings)
        for warning in warnings:
            if warning not in self.state.warnings:
                log.warning("configuration warning", extra={"warning": warning})
        changed = snapshot.version != self.state.snapshot_version
        self.state.warnings = warnings
        self.state.error = None
        self.state.registry_generation = view.generation
        self.state.translated = sum(1 for t in fresh.values() if t is not None)
        if changed:
            self.state.snapshot_version = snapshot.version
            self.state.pushes += 1
            log.info(
                "configuration snapshot ready",
                extra={"version": snapshot.version, "integrations": len(view.enabled())},
            )
        return snapshot

    def _translate(
        self, view: RegistryView, resolved: ResolvedCredentials
    ) -> tuple[Resources, dict[str, dict[str, str]], list[str], dict[str, _Translation | None]]:
        """``translate(view.items)``, reusing the translation of every unchanged integration.

        Returns the merged resources, the replica-neutral versions of those naming node-local
        paths, the warnings, and the translation of every enabled
        integration by id: None where the kept one was reused, the new one otherwise.
        """
        options = self.options()
        # Facts that apply to every integration; a change of any of them redoes them all.
        shared = dataclasses.replace(
            options, generations={}, cache_generations={}, endpoints={}, resolved={}, tokens={}
        )
        enabled = sorted(view.enabled(), key=lambda i: i.id)
        check_ports(enabled)
        resources: Resources = {CLUSTER: {}, ENDPOINT: {}, LISTENER: {}, ROUTE: {}, SECRET: {}}
        warnings: list[str] = []
        versions: dict[str, dict[str, str]] = {}
        translations: dict[str, _Translation | None] = {}
        for item in enabled:
            secrets = resolved.values_for(item)  # without what the policy withholds from it
            key = (
                _definition(item),
                tuple((r.ref, _fingerprint(secrets.get(r.ref))) for r in item.credential_refs()),
                options.generations.get(item.id, 0),
                options.cache_generations.get(item.id, 0),
                tuple(options.endpoints.get(item.id, ())),
                tuple(options.resolved.get(vetted_name(item) or "", ())),
                _fingerprint(options.tokens.get(item.id)),
                shared,
            )
            kept = self._translations.get(item.id)
            if kept is not None and kept.key == key:
                translation, translations[item.id] = kept, None
            else:
                result = translate([item], secrets, options)
                translation = _Translation(key, result.resources, result.warnings, result.versions)
                translations[item.id] = translation
            for type_url, by_name in translation.resources.items():
                resources[type_url].update(by_name)
            for type_url, named in translation.versions.items():
                versions.setdefault(type_url, {}).update(named)
            warnings.extend(translation.warnings)
        return resources, versions, warnings, translations

    def _per_workload(
        self,
        view: RegistryView,
        snapshot: Snapshot,
        translations: Mapping[str, _Translation | None],
    ) -> dict[str, Snapshot] | None:
        """Each workload's part of ``snapshot``: the resources of the enabled integrations
        it may run (same tenant, and listed when the integration lists workloads)."""
        if self.workloads is None:
            return None
        out: dict[str, Snapshot] = {}
        enabled = view.enabled()
        for workload in self.workloads():
            wanted: dict[str, list[str]] = {}
            for item in enabled:
                if not workload.may_run(item):
                    continue
                translation = translations.get(item.id) or self._translations[item.id]
                for type_url, by_name in translation.resources.items():
                    wanted.setdefault(type_url, []).extend(by_name)
            members = fleet_assignment(self.workload_members.get(workload.name, 1))
            out[workload.name] = snapshot.subset(wanted, {ENDPOINT: {FLEET_CLUSTER: members}})
        return out

    def set_fleet_members(self, pod: int, workloads: Mapping[str, int]) -> None:
        """New fleet sizes (pod: this pod's fleet; workloads: each workload's live nodes
        across replicas); applied only when one changed, so a steady fleet pushes nothing."""
        pod = max(1, pod)
        sizes = {name: max(1, n) for name, n in workloads.items()}
        if pod == self.fleet_members and sizes == self.workload_members:
            return
        self.fleet_members, self.workload_members = pod, sizes
        self.apply_current()

    def _keep(self, translations: dict[str, _Translation | None], snapshot: Snapshot) -> None:
        """Remember the translations now served, holding the snapshot's frozen copies.

        Holding the copies rather than the translator's messages costs no memory (the
        snapshot holds them anyway) and is what lets the next build reuse them by identity.
        """
        kept: dict[str, _Translation] = {}
        for ident, translation in translations.items():
            if translation is None:
                kept[ident] = self._translations[ident]
                continue
            for type_url, by_name in translation.resources.items():
                frozen = snapshot.get(type_url)
                for name in by_name:
                    by_name[name] = frozen[name]
            kept[ident] = translation
        self._translations = kept
        self._snapshot = snapshot

    def reset_cluster(self, integration_id: str) -> Snapshot | None:
        """Circuit-breaker reset: a new cluster generation makes Envoy rebuild the cluster."""
        self.generations.bump(self.generations.cluster, integration_id)
        return self.apply_current()

    def rotate_cache(self, integration_id: str) -> tuple[Path, Snapshot | None]:
        """Cache clear: point the filter at a fresh directory; returns the old one."""
        old = self.cache_path(integration_id)
        self.generations.bump(self.generations.cache, integration_id)
        return old, self.apply_current()

    def cluster_generation(self, integration_id: str) -> int:
        return self.generations.cluster.get(integration_id, 0)

    def cache_generation(self, integration_id: str) -> int:
        return self.generations.cache.get(integration_id, 0)

    def prune_cache(self, integration_id: str) -> None:
        """Delete every cache directory of the integration but the current one (earlier
        clears may have left some behind). Blocking: call it from a thread, and only once
        Envoy runs the current path (or is not connected): a directory Envoy still writes
        to must not vanish (see ``http_filters._cache``)."""
        current = self.cache_path(integration_id)
        for directory in current.parent.iterdir():
            if directory != current and directory.is_dir():
                shutil.rmtree(directory, ignore_errors=True)

    def cache_disk(self, integration_id: str) -> tuple[int, int]:
        """Files and bytes in the integration's current cache directory. Blocking."""
        sizes = [
            f.stat().st_size for f in self.cache_path(integration_id).glob("cache-*") if f.is_file()
        ]
        return len(sizes), sum(sizes)

    def set_endpoints(self, integration_id: str, endpoints: Sequence[tuple[str, int]]) -> None:
        self.endpoints[integration_id] = tuple(endpoints)
        self.apply_current()

    def set_token(self, integration_id: str, token: str | None) -> Snapshot | None:
        """Token mode: serve ``token`` (None: no valid token; the secret is emptied) in the
        integration's own token secret. Only that integration is translated again, and of
        its resources only the token secret changes, so only it gets a new version."""
        if token:
            self.tokens[integration_id] = token
        elif self.tokens.pop(integration_id, None) is None:
            return self._snapshot  # already empty
        return self.apply_current()

    def set_resolved(
        self, changes: Mapping[str, Sequence[str]], pending_view: int | None = None
    ) -> None:
        """Vetted resolution: the accepted addresses of each name in ``changes`` (none: the
        name's integrations get an EDS assignment without endpoints), in one apply.

        ``pending_view``: the generation of a registry view the resolver saw before the
        pipeline (a registry listener ahead of ``apply``); the apply is left to ``apply`` of
        that view, unless the pipeline has already seen it.
        """
        for name, addresses in changes.items():
            if addresses:
                self.resolved[name] = tuple(addresses)
            else:
                self.resolved.pop(name, None)
        seen = self._view.generation if self._view is not None else -1
        if pending_view is None or seen >= pending_view:
            self.apply_current()
