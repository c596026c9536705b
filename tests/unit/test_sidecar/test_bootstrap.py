"""The shared bootstrap template, filled in by render_bootstrap()."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from control_plane.sidecar.binary import find_envoy_binary
from control_plane.sidecar.bootstrap import (
    BOOTSTRAP_ENV_VAR,
    BootstrapTemplateNotFoundError,
    bootstrap_template_path,
    render_bootstrap,
)

REPO_TEMPLATE = Path(__file__).resolve().parents[3] / "envoy" / "bootstrap.yaml"


def _render(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "node_id": "pod-7",
        "node_cluster": "checkout",
        "xds_host": "127.0.0.1",
        "xds_port": 18000,
        "admin_port": 9901,
    }
    args.update(overrides)
    parsed: dict[str, Any] = yaml.safe_load(render_bootstrap(**args))
    return parsed


def test_fills_node_ports_and_delta_ads() -> None:
    config = _render()
    assert config["node"] == {"id": "pod-7", "cluster": "checkout"}
    assert config["admin"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 9901,
    }
    assert config["dynamic_resources"]["ads_config"]["api_type"] == "DELTA_GRPC"
    fleet, xds_cluster = config["static_resources"]["clusters"]
    assert fleet["name"] == config["cluster_manager"]["local_cluster_name"] == "integration_fleet"
    endpoint = xds_cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 18000}


def test_state_of_the_world_ads() -> None:
    assert _render(delta=False)["dynamic_resources"]["ads_config"]["api_type"] == "GRPC"


def test_admin_port_zero_is_allowed() -> None:
    config = _render(admin_port=0)
    assert config["admin"]["address"]["socket_address"]["port_value"] == 0


def test_node_id_is_escaped_not_injected() -> None:
    tricky = 'a"b\\c\n  injected: true'
    assert _render(node_id=tricky)["node"]["id"] == tricky


@pytest.mark.parametrize(
    "overrides",
    [
        {"node_id": ""},
        {"node_cluster": ""},
        # xds_cluster is STATIC: Envoy would reject a host name there.
        {"xds_host": "control-plane.svc"},
        {"xds_port": 0},
        {"xds_port": 70000},
        {"admin_port": -1},
    ],
)
def test_rejects_bad_arguments(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        _render(**overrides)


def test_ipv6_xds_host() -> None:
    config = _render(xds_host="::1")
    fleet, xds_cluster = config["static_resources"]["clusters"]
    assert fleet["name"] == config["cluster_manager"]["local_cluster_name"] == "integration_fleet"
    endpoint = xds_cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"]["address"] == "::1"


def test_template_found_in_repository() -> None:
    assert bootstrap_template_path(environ={}) == REPO_TEMPLATE


def test_template_from_environment(tmp_path: Path) -> None:
    template = tmp_path / "bootstrap.yaml"
    template.write_text("node: {id: '${node_id}'}\n", encoding="utf-8")
    assert bootstrap_template_path(environ={BOOTSTRAP_ENV_VAR: str(template)}) == template


def test_missing_template_from_environment(tmp_path: Path) -> None:
    with pytest.raises(BootstrapTemplateNotFoundError):
        bootstrap_template_path(environ={BOOTSTRAP_ENV_VAR: str(tmp_path / "missing.yaml")})


def test_unknown_placeholder_fails_loudly(tmp_path: Path) -> None:
    template = tmp_path / "bootstrap.yaml"
    template.write_text("node: {id: '${node_id}', zone: '${zone}'}\n", encoding="utf-8")
    with pytest.raises(KeyError, match="zone"):
        render_bootstrap("n", "c", "127.0.0.1", 18000, 0, template_path=template)


@pytest.mark.envoy
@pytest.mark.parametrize("delta", [True, False])
def test_envoy_validates_rendered_bootstrap(tmp_path: Path, delta: bool) -> None:
    path = tmp_path / "bootstrap.yaml"
    path.write_text(render_bootstrap("pod-7", "checkout", "127.0.0.1", 18000, 0, delta))
    # --mode validate parses the config and exits: no sockets, no hot-restart state.
    result = subprocess.run(
        [str(find_envoy_binary()), "--mode", "validate", "--config-path", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout + result.stderr
