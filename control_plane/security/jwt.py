"""JWT bearer tokens (Auth0 or any OIDC issuer) verified against the issuer's JWKS.

* Algorithms: an allow-list of asymmetric ones only (default RS256, ES256). ``none`` and
  every HMAC algorithm are refused before any key is looked at, which is what defeats
  the "HS256 signed with the public key" confusion attack.
* The key is chosen by ``kid`` and must be of the algorithm's key type.
* ``iss``, ``aud``, ``exp`` are required; ``exp``/``nbf``/``iat`` get a small leeway.
* JWKS: fetched on first use, refreshed when older than ``max_age_s``, and re-fetched on
  an unknown ``kid`` (key rotation) at most once per ``min_refetch_s`` — so a flood of
  tokens with random kids cannot turn into a flood of requests to the issuer.
* Role and tenant come from configurable claims (Auth0 custom claims are namespaced).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

from control_plane.security.api_keys import AuthError
from control_plane.security.principal import ROLES, Principal, role_rank

if TYPE_CHECKING:  # pyjwt (and cryptography) load when a JWKS or a token is first read
    from jwt import PyJWK

__all__ = ["SAFE_ALGORITHMS", "JwksCache", "JwtConfig", "JwtVerifier", "parse_algorithms"]

log = logging.getLogger(__name__)

SAFE_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
)
_KTY = {"RS": "RSA", "PS": "RSA", "ES": "EC"}
MAX_JWKS_BYTES = 256 * 1024


def parse_algorithms(text: str) -> tuple[str, ...]:
    algorithms = tuple(a.strip() for a in text.split(",") if a.strip())
    unsafe = [a for a in algorithms if a not in SAFE_ALGORITHMS]
    if unsafe or not algorithms:
        allowed = ", ".join(sorted(SAFE_ALGORITHMS))
        raise ValueError(
            f"jwt_algorithms may only name asymmetric algorithms ({allowed}); "
            f"refused: {', '.join(unsafe) or '(empty)'}"
        )
    return algorithms


@dataclass(frozen=True, slots=True)
class JwtConfig:
    issuer: str
    audience: str
    jwks_url: str
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    roles_claim: str = "https://integration-service/roles"
    tenant_claim: str = "https://integration-service/tenant"
    leeway_s: int = 10
    min_refetch_s: float = 30.0
    max_age_s: float = 600.0


class JwksCache:
    """The issuer's signing keys by ``kid``."""

    def __init__(
        self,
        url: str,
        *,
        min_refetch_s: float = 30.0,
        max_age_s: float = 600.0,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.min_refetch_s = min_refetch_s
        self.max_age_s = max_age_s
        self.fetches = 0
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._clock = clock
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def key(self, kid: str) -> PyJWK | None:
        async with self._lock:
            now = self._clock()
            stale = self._fetched_at is None or now - self._fetched_at > self.max_age_s
            unknown = kid not in self._keys
            may_refetch = self._fetched_at is None or now - self._fetched_at >= self.min_refetch_s
            if stale or (unknown and may_refetch):
                await self._fetch()
            return self._keys.get(kid)

    async def _fetch(self) -> None:
        self._fetched_at = self._clock()  # also on failure: failures are rate-limited too
        self.fetches += 1
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.get(self.url) as response:
                response.raise_for_status()
                body = await response.content.read(MAX_JWKS_BYTES + 1)
            if len(body) > MAX_JWKS_BYTES:
                raise ValueError("JWKS document too large")
            document = json.loads(body)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning(
                "JWKS fetch failed; keeping the keys we had",
                extra={"url": self.url, "error": f"{type(exc).__name__}: {exc}"},
            )
            return
        import jwt

        keys: dict[str, PyJWK] = {}
        for raw in document.get("keys", []) if isinstance(document, dict) else []:
            if not isinstance(raw, dict) or not raw.get("kid") or raw.get("use", "sig") != "sig":
                continue
            try:
                keys[str(raw["kid"])] = jwt.PyJWK.from_dict(raw)
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
                continue  # a key type we cannot use (e.g. symmetric) is skipped
        self._keys = keys
        log.info("JWKS fetched", extra={"url": self.url, "kids": sorted(keys)})


def _reasons() -> Sequence[tuple[type[Exception], str]]:
    import jwt

    return (
        (jwt.ExpiredSignatureError, "token expired"),
        (jwt.ImmatureSignatureError, "token not yet valid"),
        (jwt.InvalidAudienceError, "token audience not accepted"),
        (jwt.InvalidIssuerError, "token issuer not accepted"),
        (jwt.MissingRequiredClaimError, "token lacks a required claim"),
        (jwt.InvalidSignatureError, "token signature invalid"),
        (jwt.InvalidAlgorithmError, "token algorithm not allowed"),
    )


class JwtVerifier:
    def __init__(self, config: JwtConfig, jwks: JwksCache | None = None) -> None:
        self.config = config
        self.jwks = jwks or JwksCache(
            config.jwks_url, min_refetch_s=config.min_refetch_s, max_age_s=config.max_age_s
        )

    async def verify(self, token: str) -> Principal:
        import jwt

        cfg = self.config
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise AuthError("malformed token") from None
        alg = header.get("alg")
        if alg not in cfg.algorithms:
            raise AuthError(f"token algorithm {alg!r} not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("token has no key id (kid)")
        key = await self.jwks.key(kid)
        if key is None:
            raise AuthError("token signed with an unknown key (kid)")
        if key.key_type != _KTY[alg[:2]]:
            raise AuthError("token algorithm does not match its key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=cfg.audience,
                issuer=cfg.issuer,
                leeway=cfg.leeway_s,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            for kind, reason in _reasons():
                if isinstance(exc, kind):
                    raise AuthError(reason) from None
            raise AuthError("token invalid") from None
        return Principal(
            f"jwt:{claims['sub']}", _role(claims.get(cfg.roles_claim)), _tenant(claims, cfg), "jwt"
        )


def _role(value: Any) -> str | None:
    """The highest known role in a claim that is a string, a space list or a JSON list."""
    names = value.split() if isinstance(value, str) else value if isinstance(value, list) else []
    known = [n for n in names if isinstance(n, str) and n in ROLES]
    return max(known, key=role_rank) if known else None


def _tenant(claims: dict[str, Any], cfg: JwtConfig) -> str:
    tenant = claims.get(cfg.tenant_claim)
    if not isinstance(tenant, str) or not tenant:
        raise AuthError(f"token has no tenant claim {cfg.tenant_claim!r}")
    return tenant
