"""The values a grant needs, resolved under the credential policy, and the HTTP sessions
the grant is performed with."""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from control_plane.model import Integration
from control_plane.registry.credential_policy import CredentialPolicy
from control_plane.registry.credentials import resolve_credentials
from control_plane.registry.token_mode import TOKEN_SLOTS, TokenGrant
from control_plane.security.ssrf import Allowlist
from control_plane.tokens.client import GuardedResolver, TokenError, fetch_token
from control_plane.tokens.schedule import Minted

__all__ = ["TokenSessions", "grant_values"]


def grant_values(
    item: Integration, environ: Mapping[str, str], policy: CredentialPolicy | None
) -> dict[str, str]:
    """Slot -> value of the grant's credentials, checked against the policy *now* (a
    narrowed grant or a re-pointed symlink withholds them, as for Envoy); raise
    :class:`TokenError` naming the reference (never a value) when one is unusable."""
    resolved = resolve_credentials([item], environ, policy)
    usable = resolved.values_for(item)
    withheld = resolved.withheld.get(item.id, {})
    out: dict[str, str] = {}
    for slot in TOKEN_SLOTS:
        ref = item.credentials.get(slot)
        if ref is None:
            continue
        value = usable.get(ref.ref)
        if value is None:
            why = withheld.get(ref.ref) or resolved.missing.get(ref.ref, "not resolved")
            raise TokenError(f"credentials.{slot} ({ref.ref}) is unusable: {why}")
        out[slot] = value
    return out


class TokenSessions:
    """Two HTTP client sessions: API-registered integrations reach their token endpoint
    only at addresses the SSRF rules accept; declared ones (operator-owned) at any."""

    def __init__(self, allowlist: Allowlist, *, timeout_s: float = 10.0) -> None:
        self.allowlist = allowlist
        self.timeout_s = timeout_s
        self._guarded: aiohttp.ClientSession | None = None
        self._plain: aiohttp.ClientSession | None = None

    def _session(self, registered: bool) -> aiohttp.ClientSession:
        if registered:
            if self._guarded is None:
                connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.allowlist))
                self._guarded = aiohttp.ClientSession(connector=connector)
            return self._guarded
        if self._plain is None:
            self._plain = aiohttp.ClientSession()
        return self._plain

    def fetcher(self, registered: Mapping[str, bool]) -> TokenFetch:
        return TokenFetch(self, registered)

    async def close(self) -> None:
        for session in (self._guarded, self._plain):
            if session is not None:
                await session.close()


class TokenFetch:
    """``fetch(grant, values)`` for the broker; ``registered``: integration id -> whether
    it came through the API (live view of the registry)."""

    def __init__(self, sessions: TokenSessions, registered: Mapping[str, bool]) -> None:
        self.sessions, self.registered = sessions, registered

    async def __call__(self, grant: TokenGrant, values: Mapping[str, str]) -> Minted:
        registered = self.registered.get(grant.integration_id, True)  # unknown: guarded
        return await fetch_token(
            self.sessions._session(registered),
            grant,
            values,
            timeout_s=self.sessions.timeout_s,
            allowlist=self.sessions.allowlist if registered else None,
        )
