"""The registry store contract, shared by the SQLite and PostgreSQL engines.

The store is split by concern, each with its own small Protocol, record types and SQL:
integrations and their listen ports (:mod:`~control_plane.store.integrations`), the event
outbox (:mod:`~control_plane.store.outbox`), API keys (:mod:`~control_plane.store.api_keys`)
and the audit log (:mod:`~control_plane.store.audit`). :class:`RegistryStore` is all of
them plus the connection's lifecycle: what the application wires and what both engines
implement. A caller that needs one concern only may ask for its Protocol instead.

This module stays the one place callers import the contract from, so it re-exports the
records and the errors (:mod:`~control_plane.store.errors`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from control_plane.store.api_keys import ApiKeyRecord, ApiKeyStore
from control_plane.store.audit import AuditEntry, AuditQuery, AuditStore
from control_plane.store.errors import (
    ConflictError,
    NotFoundError,
    StoreError,
    StoreUnavailableError,
)
from control_plane.store.integrations import IntegrationStore, StoredIntegration
from control_plane.store.outbox import OutboxEvent, OutboxStore

__all__ = [
    "ApiKeyRecord",
    "ApiKeyStore",
    "AuditEntry",
    "AuditQuery",
    "AuditStore",
    "ConflictError",
    "IntegrationStore",
    "NotFoundError",
    "OutboxEvent",
    "OutboxStore",
    "RegistryStore",
    "StoreError",
    "StoreUnavailableError",
    "StoredIntegration",
]


@runtime_checkable
class RegistryStore(IntegrationStore, OutboxStore, ApiKeyStore, AuditStore, Protocol):
    """Async store of registered integrations, port assignments, the event outbox, API
    keys and the audit log."""

    async def open(self) -> None:
        """Connect and apply pending schema migrations."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise :class:`StoreUnavailableError` when the database is unreachable."""
