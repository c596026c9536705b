"""Settings for an in-process app under test (``create_app``), without Envoy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from control_plane.settings import Settings

__all__ = ["TEST_GRANTS", "app_settings", "grants_for"]

ROOT = Path(__file__).resolve().parents[2]


def grants_for(ref: str, hosts: list[str], tenants: tuple[str, ...] = ("*",)) -> str:
    """A grants file (config/grants.yaml format) granting ``ref`` for ``hosts``."""
    return json.dumps({"grants": [{"ref": ref, "tenants": list(tenants), "hosts": hosts}]})


# Grants of the references tests register through the API (config/grants.yaml format).
TEST_GRANTS = """grants:
  - ref: env:WEATHER_KEY
    tenants: ["*"]
    hosts: [api.weather.example.com]
  - ref: env:WEATHER_KEY_V2
    tenants: ["*"]
    hosts: [api.weather.example.com]
"""


def app_settings(root: Path, *, grants: str = TEST_GRANTS, **overrides: Any) -> Settings:
    """Settings rooted in *root*: copies of the repository's ``config/integrations.yaml``
    and ``config/rate_limits.yaml`` in ``root/config`` beside a grants file (``grants``),
    data in ``root/data``, and no xDS or Envoy admin port (0). *overrides* are further
    ``Settings`` fields.
    """
    config = root / "config"
    config.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "config" / "integrations.yaml", config / "integrations.yaml")
    shutil.copy(ROOT / "config" / "rate_limits.yaml", config / "rate_limits.yaml")
    (config / "grants.yaml").write_text(grants)
    values: dict[str, Any] = {
        "data_dir": root / "data",
        "integrations_file": config / "integrations.yaml",
        "rate_limits_file": config / "rate_limits.yaml",
        "grants_file": config / "grants.yaml",
        "xds_port": 0,
        "envoy_admin_port": 0,
        **overrides,
    }
    return Settings(**values)
