"""The ``token`` credential mode: what an integration asks the token broker to mint.

An integration in token mode gets an OAuth2 access token from the control plane
(client-credentials grant, RFC 6749 section 4.4) instead of a static key: ``auth0``
integrations with a ``client_id`` always are (the token endpoint is the tenant itself, at
``settings.token_path``, and ``settings.audience`` is required), and ``http`` integrations
are when their settings carry a ``token`` block naming the token endpoint.

Pure: this module reads the registry model and nothing else, so the translator (which names
the integration's token secret), the credential policy (which binds the client secret to
the token endpoint's host) and the broker (which performs the grant) share one reading.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from adapters.base import GRANT_SETTINGS, TOKEN_CREDENTIALS
from control_plane.model import CredentialRef, Integration

__all__ = [
    "ASSERTION_ALGORITHMS",
    "AUTH_METHODS",
    "TOKEN_SLOTS",
    "AuthMethod",
    "TokenGrant",
    "grant_problems",
    "token_grant",
    "token_secret_name",
]

AuthMethod = Literal["client_secret_basic", "client_secret_post", "private_key_jwt"]
# The settings' schema (adapters.base.GRANT_SETTINGS) lists the same methods and algorithms.
AUTH_METHODS: tuple[str, ...] = tuple(GRANT_SETTINGS["auth_method"]["enum"])
ASSERTION_ALGORITHMS: tuple[str, ...] = tuple(GRANT_SETTINGS["assertion_algorithm"]["enum"])
TOKEN_SLOTS: tuple[str, ...] = tuple(TOKEN_CREDENTIALS)

# Parameters the grant itself sets; a ``params`` entry may not replace them.
RESERVED_PARAMS = frozenset(
    {
        "grant_type",
        "client_id",
        "client_secret",
        "client_assertion",
        "client_assertion_type",
        "scope",
        "audience",
    }
)


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """One integration's client-credentials grant: where, as whom, for what."""

    integration_id: str
    tenant: str
    token_url: str
    auth_method: AuthMethod
    client_id: CredentialRef | None
    client_secret: CredentialRef | None = None
    assertion_key: CredentialRef | None = None
    assertion_algorithm: str = "RS256"
    scopes: tuple[str, ...] = ()
    audience: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def token_host(self) -> str:
        return (urlsplit(self.token_url).hostname or "").lower()

    @property
    def token_scheme(self) -> str:
        return urlsplit(self.token_url).scheme.lower()

    @property
    def token_port(self) -> int:
        parts = urlsplit(self.token_url)
        return parts.port or (443 if parts.scheme.lower() == "https" else 80)

    def refs(self) -> tuple[CredentialRef, ...]:
        refs = (self.client_id, self.client_secret, self.assertion_key)
        return tuple(r for r in refs if r is not None)

    def fingerprint(self) -> str:
        """What a minted token depends on: a token shared under another fingerprint (the
        grant changed since) is never adopted."""
        doc = {
            "id": self.integration_id,
            "tenant": self.tenant,
            "url": self.token_url,
            "method": self.auth_method,
            "refs": [r.ref for r in self.refs()],
            "alg": self.assertion_algorithm,
            "scopes": list(self.scopes),
            "audience": self.audience,
            "params": dict(sorted(self.params.items())),
        }
        raw = json.dumps(doc, sort_keys=True).encode("utf-8")
        return hashlib.sha256(raw).hexdigest()[:32]


def token_secret_name(integration_id: str) -> str:
    """The SDS secret holding the integration's current ``Authorization`` value. Named by
    the integration so a per-node snapshot can keep only the secrets of its integrations;
    "/" never occurs in an id, so it cannot collide with ``<id>/<slot>`` secrets."""
    return f"token/{integration_id}"


def _block(item: Integration) -> Mapping[str, Any] | None:
    if item.kind == "auth0":
        if "client_id" not in item.credentials:
            return None  # OIDC discovery and JWKS only: no token to mint
        up = item.upstream
        path = str(item.settings.get("token_path", "/oauth/token"))
        scheme = up.scheme if up.scheme in ("http", "https") else "https"
        return {**item.settings, "token_url": f"{scheme}://{up.authority}{path}"}
    if item.kind == "http":
        block = item.settings.get("token")
        return block if isinstance(block, Mapping) else None
    return None


def token_grant(item: Integration) -> TokenGrant | None:
    """The grant of an integration in token mode, or None (static credentials or none)."""
    block = _block(item)
    if block is None:
        return None
    default_method = "client_secret_post" if item.kind == "auth0" else "client_secret_basic"
    method = str(block.get("auth_method", default_method))
    if method not in AUTH_METHODS:
        method = default_method
    audience = block.get("audience")
    params = block.get("params") or {}
    return TokenGrant(
        integration_id=item.id,
        tenant=item.tenant,
        token_url=str(block["token_url"]),
        auth_method=method,  # type: ignore[arg-type]
        client_id=item.credentials.get("client_id"),
        client_secret=item.credentials.get("client_secret"),
        assertion_key=item.credentials.get("client_assertion_key"),
        assertion_algorithm=str(block.get("assertion_algorithm", "RS256")),
        scopes=tuple(str(s) for s in block.get("scopes") or ()),
        audience=str(audience) if audience else None,
        params={str(k): str(v) for k, v in sorted(params.items())},
    )


def grant_problems(item: Mapping[str, Any]) -> list[tuple[tuple[str, ...], str, str]]:
    """(path under the item, message, fix) of every reason a raw document's token mode
    cannot work; the schema has already checked the shapes."""
    kind, settings = item.get("kind"), item.get("settings")
    credentials = item.get("credentials")
    creds: Mapping[str, Any] = credentials if isinstance(credentials, Mapping) else {}
    settings = settings if isinstance(settings, Mapping) else {}
    if kind == "auth0":
        if "client_id" not in creds:
            return []
        block: Mapping[str, Any] = settings
        where: tuple[str, ...] = ("settings",)
        default = "client_secret_post"
    elif kind == "http" and isinstance(settings.get("token"), Mapping):
        block, where, default = settings["token"], ("settings", "token"), "client_secret_basic"
    else:
        return []
    out: list[tuple[tuple[str, ...], str, str]] = []
    if kind == "auth0" and not block.get("audience"):
        out.append(
            (
                (*where, "audience"),
                "auth0 M2M tokens need settings.audience (the API identifier the token is for)",
                "set it to the identifier of the API in Auth0 (Applications > APIs)",
            )
        )
    method = block.get("auth_method", default)
    needed = "client_assertion_key" if method == "private_key_jwt" else "client_secret"
    for slot in ("client_id", needed):
        if slot not in creds:
            out.append(
                (
                    ("credentials", slot),
                    f"token mode with {method} needs credentials.{slot}",
                    f"add credentials.{slot} (an env: or file: reference)",
                )
            )
    if "api_key" in creds:
        out.append(
            (
                ("credentials", "api_key"),
                "an integration in token mode injects the minted token; it takes no api_key",
                "remove credentials.api_key or the token block",
            )
        )
    params = block.get("params")
    for name in sorted(params) if isinstance(params, Mapping) else ():
        if name in RESERVED_PARAMS:
            out.append(
                (
                    (*where, "params", name),
                    f"token request parameter {name!r} is set by the grant itself",
                    "use the dedicated setting (scopes, audience) or the credentials",
                )
            )
    return out
