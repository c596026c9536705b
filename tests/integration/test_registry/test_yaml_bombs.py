"""Alias bombs in every YAML the service reads: refused fast with a clear error, and the
running registry keeps serving its last good view (the file watch and SIGHUP path)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from control_plane.problems import RegistryError
from control_plane.registry.loader import load_rate_limits
from control_plane.registry.service import RegistryService
from control_plane.settings import load_settings
from tests.unit.test_bounded_yaml import _integrations_bomb, _laughs, _merge_bomb

ROOT = Path(__file__).resolve().parents[3]
BOMBS = {"sequences": _laughs(), "merge-keys": _merge_bomb(), "integrations": _integrations_bomb()}


@pytest.mark.parametrize("shape", sorted(BOMBS))
async def test_reload_refuses_a_bomb_and_keeps_the_last_good(
    service: RegistryService, shape: str
) -> None:
    before = service.view
    assert before.items and before.file_error is None
    assert service.integrations_file is not None
    service.integrations_file.write_text(BOMBS[shape])
    started = time.monotonic()
    result = await service.reload_file()
    assert time.monotonic() - started < 5  # refused, not expanded (it used to hang)
    assert not result.ok
    assert "YAML refused" in result.problems[0].message
    assert result.problems[0].line is not None
    assert service.view.items == before.items  # the last good registry stays in force
    assert service.view.file_error is not None


@pytest.mark.parametrize("shape", sorted(BOMBS))
def test_validate_exits_2_naming_the_limit(tmp_path: Path, shape: str) -> None:
    path = tmp_path / "integrations.yaml"
    path.write_text(BOMBS[shape])
    result = subprocess.run(
        [sys.executable, "-m", "control_plane.cli", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "YAML refused" in output and "aliases" in output


def test_settings_and_rate_limit_files_refuse_bombs(tmp_path: Path) -> None:
    settings_file = tmp_path / "integration_service.yaml"
    settings_file.write_text(_laughs())
    with pytest.raises(RegistryError) as info:
        load_settings({}, settings_file)
    assert "YAML refused" in info.value.problems[0].message

    rules = tmp_path / "rate_limits.yaml"
    rules.write_text(_merge_bomb())
    with pytest.raises(RegistryError) as refused:
        load_rate_limits(rules)
    assert "YAML refused" in refused.value.problems[0].message
