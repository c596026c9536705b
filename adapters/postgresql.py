"""PostgreSQL: plain ``tcp_proxy``; the app negotiates TLS and authenticates end to end.

PostgreSQL starts TLS inside its own protocol (SSLRequest), so Envoy cannot originate it
with a plain transport socket; the database credentials stay with the app's driver.
"""

from adapters.base import AdapterSpec, CredentialSlot

ADAPTER = AdapterSpec(
    kind="postgresql",
    title="PostgreSQL",
    protocol="tcp",
    default_scheme="tcp",
    default_port=5432,
    settings_schema={
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "database": {"type": "string", "description": "database the probe connects to"},
            "user": {"type": "string", "description": "user the probe connects as"},
        },
    },
    # The app's own database password (end to end through tcp_proxy); the probe uses it.
    credentials={"password": CredentialSlot("password the probe connects with, if any")},
    envoy_features=("tcp_proxy",),
    # Pools keep idle connections (asyncpg closes its own after 300 s by default): an hour,
    # Envoy's own default, made explicit; raise it for pools that idle longer.
    tcp_idle_timeout=3600.0,
)
