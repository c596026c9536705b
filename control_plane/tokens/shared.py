"""Tokens shared by the replicas of a fleet through Redis, encrypted at rest.

One key per integration holds the current token (sealed by :class:`TokenCipher`, expiring
with the token); a second, short-lived key is the refresh lock (``SET NX PX`` with a random
owner, released only by its owner), so one replica asks the identity provider while the
others wait for, and adopt, what it stores. The fleet then makes one token request per
token lifetime. Without an encryption key nothing is stored: each replica fetches its own.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from control_plane.registry.token_mode import TokenGrant
from control_plane.tokens.schedule import Minted

if TYPE_CHECKING:  # the cipher (cryptography) is built only when tokens are shared
    from control_plane.tokens.cipher import TokenCipher

__all__ = ["SharedTokens"]

PREFIX = "integration-service:token:"
LOCK_PREFIX = "integration-service:token-lock:"
# Delete the lock only if we still own it (it may have expired and been taken since).
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class SharedTokens:
    """Read, store and lock shared tokens. Redis errors propagate: the broker falls back
    to fetching on its own for as long as Redis fails."""

    def __init__(self, redis: Any, cipher: TokenCipher, *, lock_ttl_s: float = 15.0) -> None:
        self._redis = redis
        self._cipher = cipher
        self.lock_ttl_s = lock_ttl_s

    @staticmethod
    def _binding(grant: TokenGrant) -> str:
        return f"{grant.integration_id}\n{grant.fingerprint()}"

    async def get(self, grant: TokenGrant) -> Minted | None:
        raw = await self._redis.get(PREFIX + grant.integration_id)
        if raw is None:
            return None
        plain = self._cipher.open(bytes(raw), self._binding(grant))
        if plain is None:
            return None  # another key, another integration, or a grant changed since
        doc = json.loads(plain)
        return Minted(
            token=str(doc["token"]),
            issued_at=float(doc["issued_at"]),
            expires_at=float(doc["expires_at"]),
            source="shared",
        )

    async def put(self, grant: TokenGrant, minted: Minted, now: float) -> None:
        ttl_ms = int((minted.expires_at - now) * 1000)
        if ttl_ms <= 0:
            return
        plain = json.dumps(
            {"token": minted.token, "issued_at": minted.issued_at, "expires_at": minted.expires_at}
        ).encode("utf-8")
        sealed = self._cipher.seal(plain, self._binding(grant))
        await self._redis.set(PREFIX + grant.integration_id, sealed, px=ttl_ms)

    @asynccontextmanager
    async def lock(self, integration_id: str) -> AsyncIterator[bool]:
        """Yields whether this replica holds the refresh lock of the integration."""
        key, owner = LOCK_PREFIX + integration_id, secrets.token_hex(16)
        held = bool(await self._redis.set(key, owner, nx=True, px=int(self.lock_ttl_s * 1000)))
        try:
            yield held
        finally:
            if held:
                await self._redis.eval(_RELEASE, 1, key, owner)

    async def close(self) -> None:
        await self._redis.aclose()
