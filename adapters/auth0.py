"""Auth0: OIDC discovery and JWKS pass through; Envoy fetches M2M tokens (client credentials)."""

from adapters.base import AdapterSpec, CredentialSlot

ADAPTER = AdapterSpec(
    kind="auth0",
    title="Auth0",
    protocol="http",
    default_scheme="https",
    default_port=443,
    settings_schema={
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "audience": {"type": "string", "description": "API audience for M2M tokens"},
            "token_path": {"type": "string", "pattern": "^/", "default": "/oauth/token"},
            "scopes": {"type": "array", "items": {"type": "string"}},
        },
    },
    credentials={
        "client_id": CredentialSlot("M2M application client id"),
        "client_secret": CredentialSlot("M2M application client secret"),
    },
    envoy_features=("credential_injector.oauth2", "tls_origination", "host_rewrite"),
    default_settings={"token_path": "/oauth/token"},
)
