"""The CLI as a user runs it: exit codes and messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "control_plane.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_validate_example_exits_zero() -> None:
    result = _cli("validate", "config/integrations.yaml")
    assert result.returncode == 0, result.stderr
    assert "7 integration(s)" in result.stdout


def test_validate_reports_all_three_problems_with_lines(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "integrations:\n"
        "  - id: mail\n"
        "    kind: fax\n"
        "    upstream: tcp://mail.example.com:25\n"
        "    listen_port: 70000\n"
        "  - id: pay\n"
        "    kind: stripe\n"
        "    upstream: https://api.stripe.com\n"
        "    credentials: {api_key: sk_live_NEVERPRINTED}\n"
    )
    result = _cli("validate", str(bad))
    assert result.returncode == 2
    err = result.stderr
    assert f"{bad}:3:" in err and "kind" in err
    assert f"{bad}:5:" in err and "70000" in err
    assert f"{bad}:9:" in err and "env:" in err
    assert "sk_live_NEVERPRINTED" not in err + result.stdout


def test_render_json_normalizes(tmp_path: Path) -> None:
    result = _cli("render", "--format", "json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    stripe = next(i for i in doc["integrations"] if i["id"] == "stripe")
    assert stripe["upstream"]["port"] == 443
    assert stripe["credentials"]["api_key"] == "env:STRIPE_SECRET_KEY"


def test_render_envoy_redacts_secrets() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "control_plane.cli", "render", "--format", "envoy"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "STRIPE_SECRET_KEY": "sk_test_renderleak"},
    )
    assert result.returncode == 0, result.stderr
    assert "sk_test_renderleak" not in result.stdout
    assert json.loads(result.stdout)["static_resources"]["listeners"]


def test_help_lists_every_command() -> None:
    result = _cli("--help")
    for command in ("validate", "render", "run", "test"):
        assert command in result.stdout


@pytest.mark.envoy
def test_render_envoy_is_accepted_by_envoy(tmp_path: Path) -> None:
    from control_plane.sidecar.binary import find_envoy_binary

    result = _cli("render", "--format", "envoy")
    assert result.returncode == 0, result.stderr
    config = tmp_path / "static.json"
    config.write_text(result.stdout)
    check = subprocess.run(
        [str(find_envoy_binary()), "--mode", "validate", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]


def test_validate_applies_the_credential_policy_with_lines(tmp_path: Path) -> None:
    """Declared integrations: reserved references, files outside the roots and a grant's
    destination binding are validation errors at their line (issue 15)."""
    (tmp_path / "grants.yaml").write_text(
        "grants:\n  - {ref: env:PAY_KEY, tenants: [default], hosts: [api.stripe.com]}\n"
    )
    (tmp_path / "service.yaml").write_text(
        f"grants_file: {tmp_path / 'grants.yaml'}\nfile_roots: [{tmp_path / 'secrets'}]\n"
    )
    bad = tmp_path / "declared.yaml"
    bad.write_text(
        "integrations:\n"
        "  - id: db-leak\n"
        "    kind: http\n"
        "    upstream: https://attacker.example.com\n"
        "    credentials: {api_key: env:POSTGRESQL_URL}\n"
        "  - id: file-leak\n"
        "    kind: http\n"
        "    upstream: https://attacker.example.com\n"
        "    credentials: {api_key: 'file:/etc/hostname'}\n"
        "  - id: moved\n"
        "    kind: http\n"
        "    upstream: https://attacker.example.com\n"
        "    credentials: {api_key: env:PAY_KEY}\n"
    )
    result = _cli("--config", str(tmp_path / "service.yaml"), "validate", str(bad))
    assert result.returncode == 2, result.stdout
    err = result.stderr
    assert f"{bad}:5:" in err and "env:POSTGRESQL_URL is one of the service's own" in err
    assert f"{bad}:9:" in err and "outside the file roots" in err
    assert f"{bad}:13:" in err and "may be sent only to api.stripe.com" in err
