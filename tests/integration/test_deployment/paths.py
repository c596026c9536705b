"""Where the deployment files live, and the tools that check them."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

__all__ = ["MANIFESTS", "ROOT", "tool"]

ROOT = Path(__file__).resolve().parents[3]
MANIFESTS = ROOT / "manifests"


def tool(name: str) -> str | None:
    """A console script of the test extras: the venv's first, then PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    return shutil.which(name)
