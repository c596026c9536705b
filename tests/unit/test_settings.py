"""Settings: file values overlaid by the seed's environment variables (env wins)."""

from __future__ import annotations

from pathlib import Path

import pytest

from control_plane.problems import RegistryError
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


def test_probe_schedule_from_file_overlaid_by_env(tmp_path: Path) -> None:
    from control_plane.probing.runner import ProbeSchedule

    cfg = tmp_path / "service.yaml"
    cfg.write_text("probe_interval: 5\nprobe_unhealthy_threshold: 3\n")
    env = {"INTEGRATION_SERVICE_PROBE_INTERVAL": "2.5"}
    settings = load_settings(env, cfg)
    schedule = ProbeSchedule.from_settings(settings)
    assert (schedule.interval_s, schedule.unhealthy_threshold, schedule.timeout_s) == (2.5, 3, 10.0)
    with pytest.raises(RegistryError, match="INTEGRATION_SERVICE_PROBE_TIMEOUT"):
        load_settings({"INTEGRATION_SERVICE_PROBE_TIMEOUT": "-1"}, cfg)


def test_example_service_config_loads() -> None:
    root = Path(__file__).resolve().parents[2]
    settings = load_settings({}, root / "config" / "integration_service.yaml")
    assert settings.port == 8002
    assert settings.probe_interval == 30.0


def test_ratelimit_settings(tmp_path: Path) -> None:
    none = tmp_path / "none.yaml"
    defaults = load_settings({}, none)
    assert (defaults.ratelimit_address, defaults.ratelimit_config_dir) == (None, None)
    env = {
        "INTEGRATION_SERVICE_RATELIMIT_ADDRESS": "integration-ratelimit:8081",
        "INTEGRATION_SERVICE_RATELIMIT_CONFIG_DIR": "/srv/ratelimit/ratelimit/config",
    }
    settings = load_settings(env, none)
    assert settings.ratelimit_address == "integration-ratelimit:8081"
    assert settings.ratelimit_config_dir == Path("/srv/ratelimit/ratelimit/config")
    with pytest.raises(RegistryError) as info:
        load_settings({"INTEGRATION_SERVICE_RATELIMIT_ADDRESS": "no-port"}, none)
    assert "INTEGRATION_SERVICE_RATELIMIT_ADDRESS" in info.value.render()
