"""Render the shared Envoy bootstrap (``envoy/bootstrap.yaml``).

Production (the Kubernetes ConfigMap), ``integration-service run`` and the tests all use
the same template; this module only fills in its ``string.Template`` placeholders.

Where the template is found, first match wins:

1. ``$INTEGRATION_SERVICE_BOOTSTRAP`` -- an explicit path, for installed packages (the
   wheel does not carry the top-level ``envoy/`` directory) and for containers that mount
   the file elsewhere;
2. ``<repo>/envoy/bootstrap.yaml`` next to this package in a source checkout or an
   editable install.
"""

from __future__ import annotations

import ipaddress
import json
import os
import string
from collections.abc import Mapping
from pathlib import Path

from control_plane.settings import Settings

__all__ = [
    "BOOTSTRAP_ENV_VAR",
    "NODE_CLUSTER",
    "BootstrapTemplateNotFoundError",
    "bootstrap_template_path",
    "render_bootstrap",
    "shared_bootstrap",
    "sidecar_bootstrap",
]

BOOTSTRAP_ENV_VAR = "INTEGRATION_SERVICE_BOOTSTRAP"


class BootstrapTemplateNotFoundError(FileNotFoundError):
    """Neither ``$INTEGRATION_SERVICE_BOOTSTRAP`` nor the repository template exists."""


def bootstrap_template_path(environ: Mapping[str, str] | None = None) -> Path:
    """Return the path of the bootstrap template (see the module docstring for the order)."""
    env = os.environ if environ is None else environ
    configured = env.get(BOOTSTRAP_ENV_VAR)
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise BootstrapTemplateNotFoundError(
                f"{BOOTSTRAP_ENV_VAR}={configured!r} does not name a readable file"
            )
        return path
    # parents: [0] sidecar/, [1] control_plane/, [2] the repository root.
    in_repo = Path(__file__).resolve().parents[2] / "envoy" / "bootstrap.yaml"
    if in_repo.is_file():
        return in_repo
    raise BootstrapTemplateNotFoundError(
        f"no Envoy bootstrap template at {in_repo}; set {BOOTSTRAP_ENV_VAR} to its path"
    )


def _yaml_string_body(value: str) -> str:
    """Escape *value* for use between the template's double quotes.

    A JSON string literal is a valid YAML double-quoted scalar, so JSON escaping keeps a
    node id containing ``"`` or ``\\`` from breaking (or injecting into) the YAML.
    """
    return json.dumps(value, ensure_ascii=False)[1:-1]


def _check_port(name: str, port: int, *, allow_zero: bool) -> None:
    low = 0 if allow_zero else 1
    if isinstance(port, bool) or not isinstance(port, int) or not low <= port <= 65535:
        raise ValueError(f"{name} must be an integer in {low}..65535, got {port!r}")


def render_bootstrap(
    node_id: str,
    node_cluster: str,
    xds_host: str,
    xds_port: int,
    admin_port: int,
    delta: bool = True,
    *,
    template_path: Path | None = None,
) -> str:
    """Fill the bootstrap template and return the YAML text.

    ``admin_port`` 0 lets the kernel pick a port; the supervisor learns it through
    ``--admin-address-path``. ``delta`` selects incremental ADS (``DELTA_GRPC``) rather than
    state-of-the-world (``GRPC``); the xDS server speaks both.

    ``xds_host`` must be an IP address: ``xds_cluster`` is a ``STATIC`` cluster, and Envoy
    rejects host names in static clusters (they need ``STRICT_DNS``/``LOGICAL_DNS``).
    """
    if not node_id:
        raise ValueError("node_id must not be empty")
    if not node_cluster:
        raise ValueError("node_cluster must not be empty")
    try:
        ipaddress.ip_address(xds_host)
    except ValueError:
        raise ValueError(
            f"xds_host must be an IP address (xds_cluster is a STATIC cluster), got {xds_host!r}"
        ) from None
    _check_port("xds_port", xds_port, allow_zero=False)
    _check_port("admin_port", admin_port, allow_zero=True)

    path = template_path if template_path is not None else bootstrap_template_path()
    template = string.Template(path.read_text(encoding="utf-8"))
    # substitute(), not safe_substitute(): a placeholder the template gains later must
    # fail loudly here rather than reach Envoy as a literal "${...}".
    return template.substitute(
        node_id=_yaml_string_body(node_id),
        node_cluster=_yaml_string_body(node_cluster),
        xds_host=xds_host,
        xds_port=xds_port,
        admin_port=admin_port,
        xds_api_type="DELTA_GRPC" if delta else "GRPC",
    )


NODE_CLUSTER = "integration-service"


def sidecar_bootstrap(settings: Settings, xds_port: int | None = None) -> str:
    """The shared Envoy bootstrap filled in from settings: one source for the embedded
    Envoy and for ``render --format bootstrap`` (the Kubernetes ConfigMap)."""
    return render_bootstrap(
        node_id=settings.envoy_node_id,
        node_cluster=NODE_CLUSTER,
        xds_host=settings.xds_host,
        xds_port=settings.xds_port if xds_port is None else xds_port,
        admin_port=settings.envoy_admin_port,
        delta=settings.xds_delta,
    )


SDS_CLIENT_CERT = "sds-xds-client-cert.yaml"
SDS_CA = "sds-xds-ca.yaml"


def _sds_file(secret: dict[str, object], why: str) -> str:
    doc = {
        "resources": [
            {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"}
            | secret
        ]
    }
    import yaml

    return f"# {why}\n" + yaml.safe_dump(doc, sort_keys=False)


def _path_source(path: Path) -> dict[str, object]:
    return {
        "path_config_source": {"path": str(path), "watched_directory": {"path": str(path.parent)}},
        "resource_api_version": "V3",
    }


def shared_bootstrap(
    *,
    node_id: str,
    node_cluster: str,
    xds_addresses: list[tuple[str, int]],
    tls_dir: Path,
    sds_dir: Path,
    server_name: str,
    admin_port: int = 9901,
    delta: bool = True,
) -> dict[str, str]:
    """The files of an application pod's Envoy in the shared topology, by file name:
    ``bootstrap.yaml`` and the two file-based SDS secrets it reads from ``sds_dir``.

    The per-pod template, with ``xds_cluster`` pointed at the control-plane replicas
    (``STATIC`` for addresses, ``STRICT_DNS`` for a Service name) over TLS with the pod's
    certificate and key (``tls_dir``/tls.crt, tls.key: its workload identity) and the CA
    of the control plane's certificate (``tls_dir``/ca.crt), which must carry
    ``server_name`` as a DNS SAN (cert-manager's Secret layout). Static ``tls_certificates``
    are read once, so both come through file-based SDS watching ``tls_dir``: a renewed
    certificate is used without restarting Envoy (Kubernetes swaps the Secret volume's
    ``..data`` link, which the watch sees).
    """
    import yaml

    if not xds_addresses:
        raise ValueError("at least one control-plane address is needed")
    for _, port in xds_addresses:
        _check_port("xds port", port, allow_zero=False)
    text = render_bootstrap(node_id, node_cluster, "127.0.0.1", 1, admin_port, delta)
    doc = yaml.safe_load(text)
    cluster = next(c for c in doc["static_resources"]["clusters"] if c["name"] == "xds_cluster")
    try:
        for host, _ in xds_addresses:
            ipaddress.ip_address(host)
        cluster["type"] = "STATIC"
    except ValueError:
        cluster["type"] = "STRICT_DNS"
    cluster["load_assignment"]["endpoints"] = [
        {
            "lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {"address": h, "port_value": p}}}}
                for h, p in xds_addresses
            ]
        }
    ]
    cluster["transport_socket"] = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3"
            ".UpstreamTlsContext",
            "sni": server_name,
            "common_tls_context": {
                "alpn_protocols": ["h2"],
                "tls_certificate_sds_secret_configs": [
                    {
                        "name": "xds_client_cert",
                        "sds_config": _path_source(sds_dir / SDS_CLIENT_CERT),
                    }
                ],
                "combined_validation_context": {
                    "default_validation_context": {
                        "match_typed_subject_alt_names": [
                            {"san_type": "DNS", "matcher": {"exact": server_name}}
                        ]
                    },
                    "validation_context_sds_secret_config": {
                        "name": "xds_trusted_ca",
                        "sds_config": _path_source(sds_dir / SDS_CA),
                    },
                },
            },
        },
    }
    header = (
        "# Envoy bootstrap, shared topology: rendered by `integration-service render "
        "--format bootstrap --topology shared`.\n"
        "# Envoy's --service-node flag overrides node.id (Kubernetes: $(POD_NAME) from the "
        "downward API);\n# the control plane serves the workload the client certificate "
        "names, whatever the node id.\n"
    )
    watched = {"path": str(tls_dir)}
    return {
        "bootstrap.yaml": header + yaml.safe_dump(doc, sort_keys=False),
        SDS_CLIENT_CERT: _sds_file(
            {
                "name": "xds_client_cert",
                "tls_certificate": {
                    "certificate_chain": {"filename": str(tls_dir / "tls.crt")},
                    "private_key": {"filename": str(tls_dir / "tls.key")},
                    "watched_directory": watched,
                },
            },
            "Envoy's xDS client certificate (its workload identity), re-read on rotation.",
        ),
        SDS_CA: _sds_file(
            {
                "name": "xds_trusted_ca",
                "validation_context": {
                    "trusted_ca": {"filename": str(tls_dir / "ca.crt")},
                    "watched_directory": watched,
                },
            },
            "The CA of the control plane's serving certificate, re-read on rotation.",
        ),
    }
