"""Auth0: OIDC discovery and JWKS pass through; M2M tokens minted by the control plane.

With a ``client_id`` the integration is in token mode: the control plane's token broker
performs the client-credentials grant at ``<upstream><token_path>`` with the required
``audience`` (which Envoy's own OAuth2 credential cannot send) and Envoy injects the token.
"""

from adapters.base import GRANT_SETTINGS, TOKEN_CREDENTIALS, AdapterSpec

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
            **GRANT_SETTINGS,
            "audience": {
                "type": "string",
                "minLength": 1,
                "description": "API identifier the M2M tokens are for (required with client_id)",
            },
            "token_path": {"type": "string", "pattern": "^/", "default": "/oauth/token"},
        },
    },
    credentials=TOKEN_CREDENTIALS,
    envoy_features=(
        "credential_injector.generic",
        "token_broker",
        "tls_origination",
        "host_rewrite",
    ),
    default_settings={"token_path": "/oauth/token"},
)
