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
