"""Stripe: HTTPS API, secret key injected by Envoy as ``Authorization: Bearer``."""

from adapters.base import AdapterSpec, CredentialSlot

ADAPTER = AdapterSpec(
    kind="stripe",
    title="Stripe",
    protocol="http",
    default_scheme="https",
    default_port=443,
    settings_schema={
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "api_version": {"type": "string", "description": "Stripe-Version header to pin"},
        },
    },
    credentials={
        "api_key": CredentialSlot("Stripe secret key (sk_...), injected as a bearer token", True),
        "publishable_key": CredentialSlot("Stripe publishable key, for reference only"),
    },
    envoy_features=("credential_injector.generic", "tls_origination", "host_rewrite"),
)
