"""The registry store contract, shared by the SQLite and PostgreSQL engines.

Rows hold the integration *document* (``to_document(..., with_meta=False)``: credentials
stay references) plus the metadata the store owns: ``version`` (optimistic concurrency,
starts at 1, +1 per update), ``created_at``/``updated_at`` (UTC) and the assigned
``listen_port``. Every mutation may carry outbox events that are committed in the same
transaction, so an event is never lost nor sent for a mutation that did not happen.
"""

from __future__ import annotations

import builtins
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "ApiKeyRecord",
    "AuditEntry",
    "AuditQuery",
    "ConflictError",
    "NotFoundError",
    "OutboxEvent",
    "RegistryStore",
    "StoreError",
    "StoreUnavailableError",
    "StoredIntegration",
]


class StoreError(Exception):
    """Base class of store failures."""


class ConflictError(StoreError):
    """Duplicate id, duplicate listen port, or a stale ``expected_version``."""


class NotFoundError(StoreError):
    """No integration with that id."""


class StoreUnavailableError(StoreError):
    """The database cannot be reached; nothing was written. Callers answer 503."""


@dataclass(frozen=True, slots=True)
class StoredIntegration:
    id: str
    document: Mapping[str, Any]
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """A CloudEvents envelope waiting to be published (written with its mutation)."""

    id: str
    type: str
    envelope: Mapping[str, Any]
    seq: int = 0  # assigned by the store; strictly increasing publication order
    created_at: dt.datetime | None = None
    attempts: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """A management-API key as stored: its hash, never the key itself."""

    id: str
    prefix: str  # ``isk_<id>``: shown in listings so a key can be recognised
    hash: str  # hex SHA-256 of the whole key
    name: str
    role: str
    tenant: str | None
    created_at: dt.datetime
    expires_at: dt.datetime | None = None
    revoked_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audited mutation; ``before``/``after`` are already redacted by the caller."""

    at: dt.datetime
    principal: str
    tenant: str | None
    action: str
    target: str
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None
    request_id: str | None = None
    id: int = 0  # assigned by the store, strictly increasing


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Filters of ``list_audit`` (all optional, combined with AND); newest first."""

    principal: str | None = None
    tenant: str | None = None
    action: str | None = None
    target: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    before_id: int | None = None  # page: entries older than this id
    limit: int = 100


@runtime_checkable
class RegistryStore(Protocol):
    """Async store of registered integrations, port assignments and the event outbox."""

    async def open(self) -> None:
        """Connect and apply pending schema migrations."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise :class:`StoreUnavailableError` when the database is unreachable."""

    async def list(self) -> list[StoredIntegration]: ...

    async def get(self, integration_id: str) -> StoredIntegration | None: ...

    async def create(
        self,
        integration_id: str,
        document: Mapping[str, Any],
        events: Sequence[OutboxEvent] = (),
    ) -> StoredIntegration:
        """Insert at version 1; :class:`ConflictError` when the id exists."""

    async def update(
        self,
        integration_id: str,
        document: Mapping[str, Any],
        expected_version: int,
        events: Sequence[OutboxEvent] = (),
    ) -> StoredIntegration:
        """Replace when the stored version equals ``expected_version``, else ConflictError
        (NotFoundError when absent). Never overwrites a newer version."""

    async def delete(
        self,
        integration_id: str,
        expected_version: int | None = None,
        events: Sequence[OutboxEvent] = (),
    ) -> None: ...

    # Listen ports: stable once assigned, for declared and registered integrations alike.
    async def port_assignments(self) -> dict[str, int]: ...

    async def assign_port(self, integration_id: str, port: int) -> None:
        """Record ``port`` for ``integration_id``; ConflictError if another id holds it."""

    async def release_port(self, integration_id: str) -> None: ...

    # Outbox (drained by the event relay, in ``seq`` order).
    async def append_events(self, events: Sequence[OutboxEvent]) -> None: ...

    async def pending_events(self, limit: int = 100) -> builtins.list[OutboxEvent]: ...

    async def mark_sent(self, seqs: Sequence[int]) -> None: ...

    # API keys (hashes only) and the audit log.
    async def create_api_key(self, record: ApiKeyRecord) -> None:
        """Insert; :class:`ConflictError` when the id or prefix exists."""

    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None: ...

    async def list_api_keys(self, tenant: str | None = None) -> builtins.list[ApiKeyRecord]:
        """Every key (``tenant`` None) or the keys of one tenant, oldest first."""

    async def revoke_api_key(self, key_id: str, at: dt.datetime) -> ApiKeyRecord:
        """Set ``revoked_at`` (kept when already revoked); NotFoundError when absent."""

    async def append_audit(self, entry: AuditEntry) -> AuditEntry:
        """Insert and return the entry with its id."""

    async def list_audit(self, query: AuditQuery) -> builtins.list[AuditEntry]: ...
