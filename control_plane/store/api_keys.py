"""Management-API keys as the store keeps them: hashes only, never a key itself.

Every statement here is run by both engines as written (timestamps are bound as
``datetime`` and stored the engine's way, see :mod:`control_plane.store.sessions`).
"""

from __future__ import annotations

import builtins
import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from control_plane.store.errors import ConflictError, NotFoundError
from control_plane.store.rows import Row
from control_plane.store.sessions import Session, SessionRunner, UniqueViolation

__all__ = ["ApiKeyRecord", "ApiKeyStore", "SqlApiKeyStore"]

_SELECT = (
    "SELECT id, prefix, hash, name, role, tenant, created_at, expires_at, revoked_at FROM api_keys"
)
_INSERT = (
    "INSERT INTO api_keys (id, prefix, hash, name, role, tenant,"
    " created_at, expires_at, revoked_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SELECT_ONE = _SELECT + " WHERE id = ?"
_SELECT_ALL = _SELECT + " ORDER BY created_at, id"
_SELECT_TENANT = _SELECT + " WHERE tenant = ? ORDER BY created_at, id"
# ``revoked_at IS NULL``: revoking again keeps the first revocation time.
_REVOKE = "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL"


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


@runtime_checkable
class ApiKeyStore(Protocol):
    """API keys (hashes only)."""

    async def create_api_key(self, record: ApiKeyRecord) -> None:
        """Insert; :class:`ConflictError` when the id or prefix exists."""

    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None: ...

    async def list_api_keys(self, tenant: str | None = None) -> builtins.list[ApiKeyRecord]:
        """Every key (``tenant`` None) or the keys of one tenant, oldest first."""

    async def revoke_api_key(self, key_id: str, at: dt.datetime) -> ApiKeyRecord:
        """Set ``revoked_at`` (kept when already revoked); NotFoundError when absent."""


def _optional_timestamp(session: Session, value: Any) -> dt.datetime | None:
    return None if value is None else session.timestamp(value)


def _record(row: Row, session: Session) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row["id"],
        prefix=row["prefix"],
        hash=row["hash"],
        name=row["name"],
        role=row["role"],
        tenant=row["tenant"],
        created_at=session.timestamp(row["created_at"]),
        expires_at=_optional_timestamp(session, row["expires_at"]),
        revoked_at=_optional_timestamp(session, row["revoked_at"]),
    )


async def _get(session: Session, key_id: str) -> ApiKeyRecord | None:
    rows = await session.fetch(_SELECT_ONE, key_id)
    return _record(rows[0], session) if rows else None


class SqlApiKeyStore(SessionRunner):
    """:class:`ApiKeyStore` on any engine's sessions."""

    async def create_api_key(self, record: ApiKeyRecord) -> None:
        async def work(session: Session) -> None:
            try:
                await session.execute(
                    _INSERT,
                    record.id,
                    record.prefix,
                    record.hash,
                    record.name,
                    record.role,
                    record.tenant,
                    record.created_at,
                    record.expires_at,
                    record.revoked_at,
                )
            except UniqueViolation as exc:
                raise ConflictError(f"API key {record.id!r} already exists") from exc

        await self._write(work)

    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        return await self._read(lambda session: _get(session, key_id))

    async def list_api_keys(self, tenant: str | None = None) -> builtins.list[ApiKeyRecord]:
        async def work(session: Session) -> builtins.list[ApiKeyRecord]:
            if tenant is None:
                rows = await session.fetch(_SELECT_ALL)
            else:
                rows = await session.fetch(_SELECT_TENANT, tenant)
            return [_record(row, session) for row in rows]

        return await self._read(work)

    async def revoke_api_key(self, key_id: str, at: dt.datetime) -> ApiKeyRecord:
        async def work(session: Session) -> ApiKeyRecord:
            await session.execute(_REVOKE, at, key_id)
            record = await _get(session, key_id)
            if record is None:
                raise NotFoundError(f"no API key {key_id!r}")
            return record

        return await self._write(work)
