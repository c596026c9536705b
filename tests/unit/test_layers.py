"""The import-linter contract (pyproject.toml) holds, and fails on an upward import.

Run on a copy of the packages so the check itself never edits the tree: the copy as it is
keeps the contract; the copy with one service module importing the HTTP package breaks it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _copy(tmp_path: Path) -> Path:
    for package in ("control_plane", "adapters"):
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_tree_keeps_the_contract(tmp_path: Path) -> None:
    result = _lint(_copy(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "target"),
    [
        ("control_plane/events/bus.py", "control_plane.api.problems"),  # a service -> HTTP
        ("control_plane/security/principal.py", "control_plane.api.caller"),
        ("control_plane/discovery/consul.py", "control_plane.keys"),  # a service -> app keys
        ("control_plane/registry/service.py", "control_plane.xds.snapshot"),  # registry -> xds
        ("control_plane/store/rows.py", "control_plane.registry.service"),
        ("adapters/probes/context.py", "control_plane.probing.book"),  # plug-in -> its host
        ("control_plane/model.py", "control_plane.settings"),  # leaf -> settings
    ],
)
def test_an_upward_import_breaks_it(tmp_path: Path, module: str, target: str) -> None:
    tree = _copy(tmp_path)
    path = tree / module
    path.write_text(path.read_text() + f"\nimport {target}  # noqa: E402,F401\n")
    result = _lint(tree)
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout
    importer = module.removesuffix(".py").replace("/", ".")
    assert f"{importer} -> {target}" in result.stdout, result.stdout
