"""Generic HTTP API: optional header credential injected by Envoy; configurable probe."""

from adapters.base import AdapterSpec, CredentialSlot

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
        },
    },
    credentials={"api_key": CredentialSlot("token injected into api_key_header")},
    envoy_features=("credential_injector.generic",),
    default_settings={
        "probe_path": "/",
        "api_key_header": "Authorization",
        "api_key_prefix": "Bearer ",
    },
)
