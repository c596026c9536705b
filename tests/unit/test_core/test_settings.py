"""Settings: file values overlaid by the seed's environment variables (env wins)."""

from __future__ import annotations

from pathlib import Path

import pytest

from control_plane.registry.problems import RegistryError
from control_plane.settings import load_settings, redact_url


def test_env_wins_over_file(tmp_path: Path) -> None:
    cfg = tmp_path / "service.yaml"
    cfg.write_text("port: 9000\nlog_format: console\nlisten_port_range: 20000-20010\n")
    settings = load_settings({"INTEGRATION_SERVICE_PORT": "9100"}, cfg)
    assert settings.port == 9100
    assert settings.log_format == "console"
    assert settings.listen_port_range == (20000, 20010)


def test_defaults_without_file(tmp_path: Path) -> None:
    settings = load_settings({}, tmp_path / "missing.yaml")
    assert (settings.host, settings.port, settings.postgresql_url) == ("0.0.0.0", 8002, None)


def test_invalid_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(RegistryError) as info:
        load_settings({"INTEGRATION_SERVICE_DEBUG": "maybe"}, tmp_path / "none.yaml")
    assert "INTEGRATION_SERVICE_DEBUG" in info.value.render()


def test_unknown_setting_in_file(tmp_path: Path) -> None:
    cfg = tmp_path / "service.yaml"
    cfg.write_text("prot: 1\n")
    with pytest.raises(RegistryError, match="prot"):
        load_settings({}, cfg)


def test_describe_redacts_passwords(tmp_path: Path) -> None:
    settings = load_settings(
        {"POSTGRESQL_URL": "postgresql://app:hunter2@db:5432/app"}, tmp_path / "none.yaml"
    )
    assert "hunter2" not in str(settings.describe())
    assert redact_url("redis://:pw@h:6379") == "redis://:***@h:6379"
