"""Redis: ``tcp_proxy`` (Envoy's ``redis_proxy`` cannot carry Pub/Sub); optional TLS origination."""

from adapters.base import AdapterSpec, CredentialSlot

ADAPTER = AdapterSpec(
    kind="redis",
    title="Redis",
    protocol="tcp",
    default_scheme="tcp",
    default_port=6379,
    settings_schema={
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "database": {"type": "integer", "minimum": 0, "maximum": 15},
        },
    },
    credentials={"password": CredentialSlot("password the probe uses (AUTH)")},
    envoy_features=("tcp_proxy",),
    # A Pub/Sub subscriber (or a blocking BLPOP) may sit silent for hours: no idle timeout,
    # the connection lives as long as the client and server keep it.
    tcp_idle_timeout=0.0,
)
