"""envoyproxy/ratelimit's configuration, rendered from the registry view the pipeline serves.

Why a file and not xDS: envoyproxy/ratelimit can also take its config over xDS
(``CONFIG_TYPE=GRPC_XDS_SOTW``), but its ``RateLimitConfig`` type is not in xds-protos and
would be a second resource type on a second kind of ADS client. Its file provider is what
every deployment of it supports: with ``RUNTIME_WATCH_ROOT=false`` it watches the directory
``RUNTIME_ROOT/RUNTIME_SUBDIRECTORY/config`` (fsnotify create/write/remove) and reloads every
file in it. The control plane writes ``integration-service.yaml`` there atomically: the text
goes to a dot file first (skipped with ``RUNTIME_IGNOREDOTFILES=true``), is flushed, and is
renamed over the old one, so the service never reads half a document. Nothing is written
when the rendering is unchanged (every replica renders the same bytes for the same
registry; the service reloads only on a real change).
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from control_plane.registry.view import RegistryView
from control_plane.xds.translate.global_limit import service_config

__all__ = ["CONFIG_NAME", "RateLimitConfigWriter", "write_atomically"]

log = logging.getLogger(__name__)

CONFIG_NAME = "integration-service.yaml"


def write_atomically(path: Path, text: str) -> bool:
    """Replace ``path`` by ``text`` in one rename; False when it already holds it."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    return True


class RateLimitConfigWriter:
    """A registry listener: renders the enabled global integrations into ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / CONFIG_NAME
        self.renders = 0
        self.error: str | None = None

    def render(self, view: RegistryView) -> bool:
        text = service_config(view.enabled())
        try:
            changed = write_atomically(self.path, text)
        except OSError as exc:
            self.error = f"cannot write {self.path}: {exc}"
            log.error("rate-limit service config not written", extra={"error": self.error})
            return False
        self.error = None
        if changed:
            self.renders += 1
            log.info("rate-limit service config written", extra={"file": str(self.path)})
        return changed

    async def apply(self, view: RegistryView) -> None:
        await asyncio.to_thread(self.render, view)
