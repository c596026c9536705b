"""Email: SMTP over ``tcp_proxy`` or an HTTP email API with the API key injected by Envoy."""

from adapters.base import AdapterSpec, CredentialSlot

ADAPTER = AdapterSpec(
    kind="email",
    title="Email (SMTP or HTTP API)",
    protocol="tcp",
    default_scheme="tcp",
    default_port=587,
    settings_schema={
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "transport": {"enum": ["smtp", "http"], "default": "smtp"},
            "api_key_header": {"type": "string", "default": "Authorization"},
            "api_key_prefix": {"type": "string", "default": "Bearer "},
            "probe_path": {"type": "string", "pattern": "^/"},
        },
    },
    credentials={"api_key": CredentialSlot("HTTP email API key (EMAIL_SERVICE_API_KEY)")},
    envoy_features=("tcp_proxy", "credential_injector.generic"),
    # SMTP (transport: smtp) servers drop idle sessions after a few minutes (RFC 5321
    # section 4.5.3.2.7 suggests 5 minutes); Envoy closes them at the same point.
    tcp_idle_timeout=300.0,
    default_settings={"transport": "smtp"},
)
