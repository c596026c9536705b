"""The registry service: declared integrations (file) + registered ones (store).

Declared integrations come from ``config/integrations.yaml`` and are read-only through
the API; registered ones live in the store. Every change produces a new immutable
:class:`RegistryView` and wakes the subscribers (the xDS pipeline, the API caches).
An invalid new file is rejected with its problems and the last good view stays in force.

Start-up, a file reload and :meth:`RegistryService.refresh` rebuild the view from the whole
store; a mutation replaces only its own entry, with the row the store returned.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from control_plane.model import Integration, to_document
from control_plane.problems import Problem, RegistryError
from control_plane.registry.credential_policy import CredentialPolicy
from control_plane.registry.grants import GrantsFile, newly_withheld
from control_plane.registry.loader import (
    RateRules,
    integration_from_document,
    load_integrations_file,
    load_rate_limits,
    validate_integration_document,
)
from control_plane.registry.ports import PortPlan
from control_plane.registry.registry_events import declared_clashes, registry_event, withheld_event
from control_plane.registry.view import RegistryView, ReloadResult
from control_plane.store.protocol import (
    ConflictError,
    NotFoundError,
    RegistryStore,
    StoredIntegration,
)

__all__ = ["DeclaredConflict", "RegistryService"]

log = logging.getLogger(__name__)


Listener = Callable[["RegistryView"], Awaitable[None] | None]
# Raises RegistryError when a candidate registry cannot become Envoy configuration. Run
# before anything is stored, so one bad integration can never block every later push.
Precheck = Callable[[Sequence[Integration]], None]


class DeclaredConflict(ConflictError):
    """A mutation aimed at an integration that is managed by the integrations file."""


class RegistryService:
    def __init__(
        self,
        store: RegistryStore,
        *,
        integrations_file: Path | None,
        rate_limits_file: Path | None = None,
        port_range: tuple[int, int] = (10000, 10999),
        reserved_ports: Mapping[int, str] | None = None,
        precheck: Precheck | None = None,
        grants: GrantsFile | None = None,
    ) -> None:
        self.store = store
        self.precheck = precheck
        self.integrations_file = integrations_file
        self.rate_limits_file = rate_limits_file
        self.ports = PortPlan(port_range, reserved_ports or {})
        self.grants = grants
        self._policy = CredentialPolicy()
        self._rules: RateRules = {}
        self._declared: dict[str, Integration] = {}
        self._file_digest: str | None = None
        self._file_error: RegistryError | None = None
        self._view = RegistryView(items={})
        self._listeners: list[Listener] = []
        self._lock = asyncio.Lock()

    # -- reading -------------------------------------------------------------------------
    @property
    def view(self) -> RegistryView:
        return self._view

    @property
    def rules(self) -> RateRules:
        return self._rules

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Load the files (raising RegistryError when invalid) and the store."""
        if self.grants is not None:
            self.grants.load()
        if self.rate_limits_file is not None:
            self._rules = load_rate_limits(self.rate_limits_file)
        if self.integrations_file is not None:
            text = self.integrations_file.read_bytes() if self.integrations_file.exists() else b""
            self._declared = {i.id: i for i in self._load_file()}
            self._file_digest = hashlib.sha256(text).hexdigest()
        async with self._lock:
            await self._rebuild()

    def _load_file(self) -> list[Integration]:
        assert self.integrations_file is not None
        if not self.integrations_file.exists():
            log.warning("integrations file missing", extra={"file": str(self.integrations_file)})
            return []
        return load_integrations_file(self.integrations_file, self._rules, self.policy)

    async def reload_file(self, *, force: bool = False) -> ReloadResult:
        """Re-read the integrations file (SIGHUP or change); keep the last good on error."""
        if self.integrations_file is None:
            return ReloadResult(ok=True, changed=False)
        try:
            raw = self.integrations_file.read_bytes() if self.integrations_file.exists() else b""
        except OSError as exc:
            problem = Problem("", f"cannot read: {exc.strerror}", file=str(self.integrations_file))
            return ReloadResult(ok=False, changed=False, problems=[problem])
        digest = hashlib.sha256(raw).hexdigest()
        if digest == self._file_digest and not force:
            return ReloadResult(ok=self._file_error is None, changed=False)
        async with self._lock:
            try:
                if self.rate_limits_file is not None:
                    self._rules = load_rate_limits(self.rate_limits_file)
                declared = {i.id: i for i in self._load_file()}
                registered = await self._registered()
                clash = declared_clashes(str(self.integrations_file), declared, registered)
                if clash:
                    raise RegistryError(clash, f"{self.integrations_file} is invalid")
                self._check({**registered, **declared}.values())
            except RegistryError as exc:
                self._file_digest = digest
                self._file_error = exc
                log.error(
                    "integrations file rejected; the last good registry stays in force",
                    extra={
                        "file": str(self.integrations_file),
                        "problems": [p.render() for p in exc.problems],
                    },
                )
                self._view = dataclasses.replace(self._view, file_error=exc)
                return ReloadResult(ok=False, changed=False, problems=exc.problems)
            self._declared = declared
            self._file_digest = digest
            self._file_error = None
            await self._rebuild(registered)
        log.info("integrations file reloaded", extra={"declared": len(declared)})
        return ReloadResult(ok=True, changed=True)

    async def watch_file(self, interval: float = 1.0) -> None:
        """Poll the files for changes (content hash); runs until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reload_file()
                await self.reload_grants()
            except Exception:  # a watcher must never die
                log.exception("reloading the integrations or grants file failed")

    async def reload_grants(self) -> bool:
        """Re-read the grants file; a narrowed or removed grant withholds the affected
        credentials from Envoy with the next view, and each affected integration gets an
        ``integration.credential_withheld`` event (references and rules, never values)."""
        if self.grants is None:
            return False
        before = self.policy
        if not self.grants.reload():
            return False
        async with self._lock:
            affected = newly_withheld(before, self.policy, self._view.items.values())
            events = [withheld_event(item, why) for item, why in affected]
            if events:
                await self.store.append_events(events)
            await self._publish(dict(self._view.items))
        return True

    async def refresh(self) -> None:
        """Re-read the store (another replica changed it) and notify when changed."""
        async with self._lock:
            await self._rebuild()

    # -- mutations -----------------------------------------------------------------------
    def parse(self, document: Mapping[str, Any], *, replacing: str | None = None) -> Integration:
        """The registered integration ``document`` describes; :class:`RegistryError` with
        every problem when it is invalid. Done once per write: :meth:`create` and
        :meth:`update` take the result. ``replacing`` (an update) fixes the id, and a
        declared one is refused as read-only before its document's problems are reported."""
        item, problems = self.check(document, replacing=replacing)
        if problems or item is None:
            raise RegistryError(problems, "invalid integration")
        return item

    def check(
        self, document: Mapping[str, Any], *, replacing: str | None = None
    ) -> tuple[Integration | None, list[Problem]]:
        """(the integration, or None when it cannot be built; every problem of the document:
        schema, ports and the credential policy together)."""
        if replacing is not None:
            document = {**document, "id": replacing}
        problems = validate_integration_document(document, self._rules)
        valid = not problems  # only a valid document is built: its references are well formed
        problems.extend(self.ports.problems(document.get("listen_port")))
        if problems and replacing is not None:
            self._refuse_declared(replacing)
        if not valid:
            return None, [*problems, *self.policy.document_problems(document)]
        item = integration_from_document(document, source="registered", rules=self._rules)
        problems.extend(self.policy.problems(item))
        return item, problems

    @property
    def policy(self) -> CredentialPolicy:
        """Which credential references may be used (grants, reserved refs, file roots)."""
        return self.grants.policy if self.grants is not None else self._policy

    def _refuse_declared(self, integration_id: str) -> None:
        if integration_id in self._declared:
            raise DeclaredConflict(
                f"integration {integration_id!r} is declared in {self.integrations_file}; "
                "it is read-only through the API: edit the file instead (it is reloaded on "
                "change and on SIGHUP)"
            )

    async def create(
        self, document: Mapping[str, Any] | Integration, *, correlation_id: str | None = None
    ) -> Integration:
        """Register a document, or the integration :meth:`parse` built from one."""
        item = document if isinstance(document, Integration) else self.parse(document)
        async with self._lock:
            self._refuse_declared(item.id)
            assigned = await self.store.port_assignments()
            port = self.ports.choose(item, assigned, self._declared.values())
            item = item.replace(listen_port=port)
            self._check_with(item)
            # The event carries the version the store is about to assign (creates start at 1).
            event = registry_event(
                "integration.registered", item.replace(version=1), correlation_id
            )
            # The port is claimed first (unique in the store), so two replicas racing for
            # the same port cannot both create; a failed create gives a new claim back.
            await self.store.assign_port(item.id, port)
            try:
                row = await self.store.create(
                    item.id, to_document(item, with_meta=False), events=[event]
                )
            except Exception:
                if item.id not in assigned:
                    await self.store.release_port(item.id)
                raise
            return await self._put(row)

    async def update(
        self,
        integration_id: str,
        document: Mapping[str, Any] | Integration,
        expected_version: int,
        *,
        correlation_id: str | None = None,
    ) -> Integration:
        """Replace with a document, or with the integration ``parse(..., replacing=id)``
        built from one."""
        self._refuse_declared(integration_id)
        if isinstance(document, Integration):
            if document.id != integration_id:
                raise ValueError(f"integration {document.id!r} cannot replace {integration_id!r}")
            item = document
        else:
            item = self.parse(document, replacing=integration_id)
        async with self._lock:
            current = await self.store.get(integration_id)
            if current is None:
                raise NotFoundError(f"no integration {integration_id!r}")
            port = self.ports.choose(
                item, await self.store.port_assignments(), self._declared.values()
            )
            item = item.replace(listen_port=port)
            self._check_with(item)
            updated = item.replace(version=expected_version + 1)
            event = registry_event("integration.updated", updated, correlation_id)
            row = await self.store.update(
                integration_id, to_document(item, with_meta=False), expected_version, events=[event]
            )
            await self.store.assign_port(integration_id, port)
            return await self._put(row)

    async def delete(
        self,
        integration_id: str,
        expected_version: int | None = None,
        *,
        correlation_id: str | None = None,
    ) -> None:
        self._refuse_declared(integration_id)
        async with self._lock:
            current = self._view.items.get(integration_id)
            if current is None:
                raise NotFoundError(f"no integration {integration_id!r}")
            event = registry_event("integration.deregistered", current, correlation_id)
            await self.store.delete(integration_id, expected_version, events=[event])
            await self.store.release_port(integration_id)
            items = dict(self._view.items)
            del items[integration_id]
            await self._publish(items)

    def _check(self, items: Iterable[Integration]) -> None:
        if self.precheck is not None:
            self.precheck(list(items))

    def _check_with(self, item: Integration) -> None:
        """Would ``item`` translate? Its resources reference only each other, and ports are
        checked by ``PortPlan.choose``, so checking it alone is enough (and cheap)."""
        self._check([item])

    # -- internals -----------------------------------------------------------------------
    def _from_row(self, row: StoredIntegration) -> Integration:
        """The view's entry for a stored row (its normalised document, as every replica
        reads it back, plus the metadata the store owns)."""
        item = integration_from_document(row.document, source="registered", rules=self._rules)
        return item.replace(
            version=row.version, created_at=row.created_at, updated_at=row.updated_at
        )

    async def _registered(self) -> dict[str, Integration]:
        rows: list[StoredIntegration] = await self.store.list()
        return {row.id: self._from_row(row) for row in rows}

    async def _put(self, row: StoredIntegration) -> Integration:
        """Publish the view with ``row`` (what the store just wrote) as its entry; the
        other entries are kept as they are (no store read)."""
        item = self._from_row(row)
        items = {**self._view.items, row.id: item}
        await self._publish(items if row.id in self._view.items else dict(sorted(items.items())))
        return item

    async def _rebuild(self, registered: dict[str, Integration] | None = None) -> None:
        """The whole view again, from the store (or the ``registered`` just read from it)."""
        if registered is None:
            registered = await self._registered()
        declared: dict[str, Integration] = {}
        assigned: dict[str, int] | None = None
        for ident, item in self._declared.items():
            if item.listen_port is None:
                if assigned is None:
                    assigned = await self.store.port_assignments()
                port = self.ports.choose(item, assigned, self._declared.values())
                await self.store.assign_port(ident, port)
                assigned[ident] = port
                item = item.replace(listen_port=port)
            declared[ident] = item
        items = {**registered, **declared}
        ordered = {k: items[k] for k in sorted(items)}
        # The first build always notifies, even when empty: an empty registry is still a
        # configuration Envoy must receive (an empty snapshot), or readiness never turns true.
        unchanged = ordered == dict(self._view.items) and self._view.file_error is self._file_error
        if unchanged and self._view.generation > 0:
            return
        await self._publish(ordered)

    async def _publish(self, items: Mapping[str, Integration]) -> None:
        """Install ``items`` (ordered by id) as the next view and wake the listeners."""
        self._view = RegistryView(
            items=items,
            generation=self._view.generation + 1,
            file_error=self._file_error,
            policy=self.policy,
        )
        for listener in list(self._listeners):
            result = listener(self._view)
            if result is not None:
                await result
