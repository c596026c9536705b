"""Management-API keys: ``isk_<id>_<secret>``, shown once, stored as a SHA-256 hash.

* ``<id>`` (12 hex digits) is the primary key and is not secret: it names the key in
  listings, logs and the audit log. ``<secret>`` is 32 random bytes (``token_urlsafe``).
* Only ``sha256(key)`` is stored. A fast hash is enough here, unlike for passwords: the
  secret has 256 bits of entropy, so no dictionary or brute-force search of the hash is
  feasible, and a slow KDF (bcrypt, argon2) would only add latency to every request.
* The presented key's hash is compared with :func:`hmac.compare_digest` (constant time).
* Keys are checked against the store on every request, so a revocation or an expiry
  takes effect on the very next request, on every replica.

On first start with authentication enabled and no key in the store, an admin key with
the fixed id ``bootstrap`` is generated and printed once to stderr (never to the log);
the fixed id makes two replicas racing on first start create only one. Alternatively the
``admin_key`` setting names a secret reference (``env:NAME``/``file:/path``) whose value
is accepted as a global admin key (rotate it by changing the secret and restarting).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import re
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from control_plane.observability.logging import register_secret
from control_plane.security.principal import GLOBAL_TENANT, Principal
from control_plane.store.protocol import ApiKeyRecord, ConflictError, RegistryStore

__all__ = [
    "BOOTSTRAP_KEY_ID",
    "KEY_PREFIX",
    "ApiKeyAuthenticator",
    "AuthError",
    "IssuedKey",
    "ensure_bootstrap_key",
    "hash_key",
    "issue_key",
    "key_id_of",
    "load_admin_key",
]

log = logging.getLogger(__name__)

KEY_PREFIX = "isk_"
BOOTSTRAP_KEY_ID = "bootstrap"
MIN_CONFIGURED_KEY_LENGTH = 24
_KEY = re.compile(r"^isk_([a-z0-9]{1,32})_([A-Za-z0-9_-]{20,128})$")


class AuthError(Exception):
    """Credentials were presented but are not valid (401); the message names why."""


@dataclass(frozen=True, slots=True)
class IssuedKey:
    record: ApiKeyRecord
    key: str  # the only time the full key exists outside the caller's hands


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_id_of(key: str) -> str | None:
    """The id part of a well-formed key, else None."""
    match = _KEY.match(key)
    return match.group(1) if match else None


def issue_key(
    *,
    name: str,
    role: str,
    tenant: str,
    expires_at: dt.datetime | None = None,
    key_id: str | None = None,
    now: dt.datetime | None = None,
) -> IssuedKey:
    ident = key_id or secrets.token_hex(6)
    key = f"{KEY_PREFIX}{ident}_{secrets.token_urlsafe(32)}"
    register_secret(key)
    record = ApiKeyRecord(
        id=ident,
        prefix=f"{KEY_PREFIX}{ident}",
        hash=hash_key(key),
        name=name,
        role=role,
        tenant=tenant,
        created_at=now or dt.datetime.now(dt.UTC),
        expires_at=expires_at,
    )
    return IssuedKey(record, key)


def resolve_secret_reference(ref: str, environ: Mapping[str, str]) -> str:
    """The value behind ``env:NAME`` or ``file:/path``; ValueError naming the reference."""
    scheme, _, target = ref.partition(":")
    if scheme == "env" and target:
        value = environ.get(target, "")
        if not value:
            raise ValueError(f"admin_key {ref}: environment variable {target} is not set")
        return value.strip()
    if scheme == "file" and target:
        try:
            return Path(target).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"admin_key {ref}: cannot read {target}: {exc.strerror}") from None
    # The value is not echoed: a literal key pasted here must not reach a terminal or log.
    raise ValueError("admin_key must be a secret reference env:NAME or file:/path, not a value")


def load_admin_key(ref: str | None, environ: Mapping[str, str]) -> str | None:
    """The configured admin key's hash (the value itself is not kept), or None."""
    if not ref:
        return None
    value = resolve_secret_reference(ref, environ)
    if len(value) < MIN_CONFIGURED_KEY_LENGTH:
        raise ValueError(
            f"admin_key {ref}: the key must be at least {MIN_CONFIGURED_KEY_LENGTH} characters"
        )
    register_secret(value)
    return hash_key(value)


async def ensure_bootstrap_key(store: RegistryStore, stream: TextIO | None = None) -> bool:
    """Create and print the first admin key when the store holds no key at all."""
    if await store.list_api_keys():
        return False
    issued = issue_key(
        name="bootstrap admin", role="admin", tenant=GLOBAL_TENANT, key_id=BOOTSTRAP_KEY_ID
    )
    try:
        await store.create_api_key(issued.record)
    except ConflictError:  # another replica won the race and printed its key
        return False
    out = stream or sys.stderr
    # Deliberately print(), not the logger: log lines are shipped and kept; this is shown
    # once on the console of whoever starts the service and never again.
    print(
        "\n*** Integration Service: first start, a global admin API key was created.\n"
        f"*** {issued.key}\n"
        "*** It is shown only this once; store it now (send it as 'Authorization: Bearer "
        "<key>'),\n*** create named keys with POST /api-keys and revoke this one "
        f"(DELETE /api-keys/{BOOTSTRAP_KEY_ID}).\n",
        file=out,
        flush=True,
    )
    log.warning(
        "first start: bootstrap admin API key created and printed to stderr",
        extra={"key_id": BOOTSTRAP_KEY_ID},
    )
    return True


class ApiKeyAuthenticator:
    """Turns a presented API key into a :class:`Principal` (store lookup every time)."""

    def __init__(self, store: RegistryStore, configured_admin_hash: str | None = None) -> None:
        self._store = store
        self._configured = configured_admin_hash

    async def authenticate(self, key: str, now: dt.datetime | None = None) -> Principal:
        presented = hash_key(key)
        if self._configured is not None and hmac.compare_digest(presented, self._configured):
            return Principal("config:admin-key", "admin", GLOBAL_TENANT, "api_key")
        key_id = key_id_of(key)
        if key_id is None:
            raise AuthError("malformed API key")
        record = await self._store.get_api_key(key_id)
        # Compare even when the id is unknown, so timing does not tell ids apart.
        expected = record.hash if record is not None else hash_key(f"{KEY_PREFIX}{key_id}_x")
        if not hmac.compare_digest(presented, expected) or record is None:
            raise AuthError("unknown API key")
        if record.revoked_at is not None:
            raise AuthError("API key revoked")
        current = now or dt.datetime.now(dt.UTC)
        if record.expires_at is not None and record.expires_at <= current:
            raise AuthError("API key expired")
        return Principal(f"api_key:{record.id}", record.role, record.tenant or "", "api_key")
