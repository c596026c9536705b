"""Management-API keys: ``isk_<id>_<secret>``, shown once, stored as a SHA-256 hash.

* ``<id>`` (12 hex digits) is the primary key and is not secret: it names the key in
  listings, logs and the audit log. ``<secret>`` is 32 random bytes (``token_urlsafe``).
* Only ``sha256(key)`` is stored. A fast hash is enough here, unlike for passwords: the
  secret has 256 bits of entropy, so no dictionary or brute-force search of the hash is
  feasible, and a slow KDF (bcrypt, argon2) would only add latency to every request.
* The presented key's hash is compared with :func:`hmac.compare_digest` (constant time).
* Verified keys are cached per process for :data:`CACHE_TTL_S` (1 s), keyed by the
  presented key's hash, at most :data:`CACHE_SIZE` entries; only keys found valid
  (known, matching, not revoked) are cached, and an entry is used only while it is
  younger than the TTL. Without the cache every request paid a store round trip (with
  SQLite a lock and a thread hop), which capped authenticated ``GET /integrations/{id}``
  at about 1,300 req/s on one core (``bench/RESULTS.md``, B6).
* Expiry is checked on every request, against the cached record's ``expires_at``.
* Revocation takes effect on the very next request on the replica that revoked the key:
  ``DELETE /api-keys/{id}`` calls :meth:`ApiKeyAuthenticator.invalidate` after the store
  write, and a lookup that raced with the revocation does not fill the cache. Other
  replicas see a revocation within the TTL (1 s), when their entry is re-read from the
  store.
* Concurrent lookups of one key that miss the cache share one store read (started after
  the last invalidation). When an entry expires under load, every request in flight for
  that key misses at once; each used to make its own read, one after another behind the
  SQLite lock, each a thread hop that waits for the busy event loop to hand over the GIL:
  about 20 ms apiece, a 130-160 ms stall every second at 8 connections (issue 20).

On first start with authentication enabled and no key in the store, an admin key with
the fixed id ``bootstrap`` is generated and printed once to stderr (never to the log);
the fixed id makes two replicas racing on first start create only one. Alternatively the
``admin_key`` setting names a secret reference (``env:NAME``/``file:/path``) whose value
is accepted as a global admin key (rotate it by changing the secret and restarting).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import logging
import re
import secrets
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from control_plane.observability.logging import register_secret
from control_plane.security.principal import GLOBAL_TENANT, Principal
from control_plane.store.protocol import ApiKeyRecord, ConflictError, RegistryStore

__all__ = [
    "BOOTSTRAP_KEY_ID",
    "CACHE_SIZE",
    "CACHE_TTL_S",
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
# How long a verified key record is trusted without re-reading the store: the time another
# replica's revocation can take to reach this one. The replica that revokes drops it at once.
CACHE_TTL_S = 1.0
CACHE_SIZE = 1024  # distinct keys kept; the oldest entry is evicted first
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
    """Turns a presented API key into a :class:`Principal`.

    Store records of valid keys are cached for ``cache_ttl_s`` (see the module docstring);
    ``cache_ttl_s=0`` reads the store on every request. ``clock`` (monotonic seconds) is
    injectable for tests.
    """

    def __init__(
        self,
        store: RegistryStore,
        configured_admin_hash: str | None = None,
        *,
        cache_ttl_s: float = CACHE_TTL_S,
        cache_size: int = CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._configured = configured_admin_hash
        self._ttl = cache_ttl_s
        self._size = cache_size
        self._clock = clock
        # presented key hash -> (monotonic time read from the store, record); insertion order
        # is age order, so the first entry is the one to evict.
        self._cache: dict[str, tuple[float, ApiKeyRecord]] = {}
        # Bumped by every invalidation: a store read that started before one must not fill
        # the cache with what may be a pre-revocation record.
        self._epoch = 0
        # (presented key hash, epoch) -> the store read in flight for it, shared by every
        # lookup that misses meanwhile; a lookup after an invalidation starts its own.
        self._reads: dict[tuple[str, int], asyncio.Future[ApiKeyRecord | None]] = {}

    def invalidate(self, key_id: str) -> None:
        """Forget ``key_id`` now (call after revoking it in the store)."""
        self._epoch += 1
        for digest in [d for d, (_, r) in self._cache.items() if r.id == key_id]:
            del self._cache[digest]

    async def _record(self, presented: str, key_id: str) -> ApiKeyRecord | None:
        now = self._clock()
        cached = self._cache.get(presented)
        if cached is not None:
            if now - cached[0] < self._ttl:
                return cached[1]
            del self._cache[presented]
        if self._ttl <= 0:  # no cache: every lookup reads the store itself
            return await self._read(presented, key_id, now, self._epoch)
        flight = (presented, self._epoch)
        read = self._reads.get(flight)
        if read is None:
            read = asyncio.ensure_future(self._read(presented, key_id, now, self._epoch))
            self._reads[flight] = read
            read.add_done_callback(lambda _: self._reads.pop(flight, None))
        # Shielded: a caller that goes away (client disconnect) does not cancel the read
        # the others wait for.
        return await asyncio.shield(read)

    async def _read(
        self, presented: str, key_id: str, now: float, epoch: int
    ) -> ApiKeyRecord | None:
        record = await self._store.get_api_key(key_id)
        if (
            self._ttl > 0
            and epoch == self._epoch
            and record is not None
            and record.revoked_at is None
            and hmac.compare_digest(presented, record.hash)
        ):
            if len(self._cache) >= self._size:
                del self._cache[next(iter(self._cache))]
            self._cache[presented] = (now, record)
        return record

    async def authenticate(self, key: str, now: dt.datetime | None = None) -> Principal:
        presented = hash_key(key)
        if self._configured is not None and hmac.compare_digest(presented, self._configured):
            return Principal("config:admin-key", "admin", GLOBAL_TENANT, "api_key")
        key_id = key_id_of(key)
        if key_id is None:
            raise AuthError("malformed API key")
        record = await self._record(presented, key_id)
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
