"""``integration-service render --format envoy``: the registry as a static Envoy config.

The same translator that feeds ADS produces the resources; they are laid out as a static
bootstrap (secrets as static SDS secrets) that ``envoy --mode validate`` accepts. Credential
values are replaced by ``<redacted:REFERENCE>`` unless ``include_secrets`` is set, so the
output can be pasted into a ticket without leaking anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from control_plane.model import Integration
from control_plane.registry.credentials import resolve_credentials
from control_plane.settings import Settings
from control_plane.xds.translate import TranslateOptions, render_static_bootstrap, translate

__all__ = ["assign_ports", "render_envoy_static"]


def assign_ports(items: Sequence[Integration], port_range: tuple[int, int]) -> list[Integration]:
    """Give integrations without ``listen_port`` the lowest free ports, in id order."""
    taken = {i.listen_port for i in items if i.listen_port is not None}
    free = (p for p in range(port_range[0], port_range[1] + 1) if p not in taken)
    out = []
    for item in sorted(items, key=lambda i: i.id):
        out.append(item if item.listen_port is not None else item.replace(listen_port=next(free)))
    return out


def render_envoy_static(
    items: Sequence[Integration],
    settings: Settings,
    *,
    include_secrets: bool = False,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    placed = assign_ports(items, settings.listen_port_range)
    if include_secrets:
        values: Mapping[str, str] = resolve_credentials(placed, environ or {}).values
    else:
        values = {r.ref: f"<redacted:{r.ref}>" for i in placed for r in i.credential_refs()}
    cache_root = str((settings.data_dir / "http-cache").resolve())
    result = translate(placed, values, TranslateOptions(cache_root=cache_root))
    return render_static_bootstrap(result.resources, settings.envoy_admin_port)
