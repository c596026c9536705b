"""What an integration kind declares: settings schema, upstream shape, Envoy features.

An adapter is data plus (from the adapters issue on) a probe. The translator reads the
declaration to decide between an HTTP and a TCP listener and which filters to add; the
schema builder merges ``settings_schema`` into the registry's JSON Schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "GRANT_SETTINGS",
    "TOKEN_CREDENTIALS",
    "TOKEN_SETTINGS",
    "AdapterSpec",
    "CredentialSlot",
    "Protocol",
]

Protocol = Literal["http", "tcp"]


@dataclass(frozen=True, slots=True)
class CredentialSlot:
    """A named credential the kind may use; the value is always an ``env:``/``file:`` ref."""

    description: str
    required: bool = False


@dataclass(frozen=True, slots=True)
class AdapterSpec:
    kind: str
    title: str
    protocol: Protocol
    default_scheme: Literal["http", "https", "tcp", "tls"]
    default_port: int
    settings_schema: Mapping[str, Any]
    credentials: Mapping[str, CredentialSlot] = field(default_factory=dict)
    # Envoy features the translator must wire for this kind (documentation and checks).
    envoy_features: tuple[str, ...] = ()
    # Settings applied when the user's block omits them (JSON Schema "default" is not applied
    # by jsonschema, so defaults live here explicitly).
    default_settings: Mapping[str, Any] = field(default_factory=dict)
    # TCP listeners: close a connection idle this long, in seconds (0: never). Overridden
    # per integration by ``policies.idle_timeout``; HTTP listeners do not use it.
    tcp_idle_timeout: float = 3600.0

    def protocol_for(self, settings: Mapping[str, Any]) -> Protocol:
        """The listener protocol; a kind with several transports picks it from settings."""
        transport = settings.get("transport")
        if transport == "smtp":
            return "tcp"
        if transport == "http":
            return "http"
        return self.protocol


# Token mode (control_plane.registry.token_mode): the grant fields, one definition for the
# ``token`` block of ``http`` and the settings of ``auth0``.
GRANT_SETTINGS: Mapping[str, Any] = {
    "auth_method": {
        "enum": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "description": "how the client authenticates to the token endpoint (RFC 6749 "
        "section 2.3.1; private_key_jwt: RFC 7523 with credentials.client_assertion_key)",
    },
    "scopes": {"type": "array", "items": {"type": "string", "pattern": r"^[!#-\[\]-~]+(?!\n)$"}},
    "audience": {"type": "string", "minLength": 1, "description": "the API the token is for"},
    "params": {
        "type": "object",
        "description": "extra form parameters of the token request (e.g. resource)",
        "propertyNames": {"pattern": r"^[A-Za-z0-9_.-]{1,64}(?!\n)$"},
        "additionalProperties": {"type": "string", "maxLength": 1024},
    },
    # Asymmetric only: a private_key_jwt assertion is signed with the client's private key.
    "assertion_algorithm": {"enum": ["RS256", "PS256", "ES256"]},
}
TOKEN_SETTINGS: Mapping[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["token_url"],
    "properties": {
        "token_url": {"type": "string", "pattern": r"^https?://[^/?#\s]+(/\S*)?(?!\n)$"},
        **GRANT_SETTINGS,
    },
}
TOKEN_CREDENTIALS: Mapping[str, CredentialSlot] = {
    "client_id": CredentialSlot("OAuth2 client id (sent to the token endpoint only)"),
    "client_secret": CredentialSlot("OAuth2 client secret (sent to the token endpoint only)"),
    "client_assertion_key": CredentialSlot(
        "private key (PEM, file:) signing private_key_jwt client assertions"
    ),
}
