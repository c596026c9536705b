"""Settings for an in-process app under test (``create_app``), without Envoy."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from control_plane.settings import Settings

__all__ = ["app_settings"]

ROOT = Path(__file__).resolve().parents[2]


def app_settings(root: Path, **overrides: Any) -> Settings:
    """Settings rooted in *root*: copies of the repository's ``config/integrations.yaml``
    and ``config/rate_limits.yaml`` in ``root/config``, data in ``root/data``, and no xDS
    or Envoy admin port (0). *overrides* are further ``Settings`` fields.
    """
    config = root / "config"
    config.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "config" / "integrations.yaml", config / "integrations.yaml")
    shutil.copy(ROOT / "config" / "rate_limits.yaml", config / "rate_limits.yaml")
    values: dict[str, Any] = {
        "data_dir": root / "data",
        "integrations_file": config / "integrations.yaml",
        "rate_limits_file": config / "rate_limits.yaml",
        "xds_port": 0,
        "envoy_admin_port": 0,
        **overrides,
    }
    return Settings(**values)
