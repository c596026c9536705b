"""Generic HTTP API: optional header credential injected by Envoy; configurable probe.

Token mode (``settings.token``): the control plane mints OAuth2 client-credentials tokens
at ``token.token_url`` and Envoy injects them as ``Authorization: Bearer <token>``
(``control_plane.registry.token_mode``, ``control_plane.tokens``).
"""

from adapters.base import TOKEN_CREDENTIALS, TOKEN_SETTINGS, AdapterSpec, CredentialSlot

ADAPTER = AdapterSpec(
    kind="http",
    title="Generic HTTP API",
    protocol="http",
    default_scheme="https",
    default_port=443,
    settings_schema={
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "probe_path": {"type": "string", "pattern": "^/", "default": "/"},
            "expected_status": {"type": "integer", "minimum": 100, "maximum": 599},
            "api_key_header": {"type": "string", "default": "Authorization"},
            "api_key_prefix": {"type": "string", "default": "Bearer "},
            "token": TOKEN_SETTINGS,
        },
    },
    credentials={
        "api_key": CredentialSlot("token injected into api_key_header"),
        **TOKEN_CREDENTIALS,
    },
    envoy_features=("credential_injector.generic", "token_broker"),
    default_settings={
        "probe_path": "/",
        "api_key_header": "Authorization",
        "api_key_prefix": "Bearer ",
    },
)
