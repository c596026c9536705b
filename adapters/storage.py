"""S3-compatible storage: Envoy signs requests with SigV4, so the app holds no keys."""

from adapters.base import AdapterSpec, CredentialSlot

ADAPTER = AdapterSpec(
    kind="storage",
    title="S3-compatible object storage",
    protocol="http",
    default_scheme="https",
    default_port=443,
    settings_schema={
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "region": {"type": "string", "default": "us-east-1"},
            "bucket": {"type": "string", "description": "bucket the probe checks (HeadBucket)"},
            "service": {"type": "string", "default": "s3"},
        },
    },
    credentials={
        "access_key_id": CredentialSlot("access key id (STORAGE_SERVICE_ACCESS_KEY)"),
        "secret_access_key": CredentialSlot("secret access key"),
    },
    envoy_features=("aws_request_signing", "tls_origination", "host_rewrite"),
    default_settings={"region": "us-east-1", "service": "s3"},
)
