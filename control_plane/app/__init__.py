"""Wiring and lifecycle: ``create_app(settings)`` builds the aiohttp application from the
layers below; ``run_service`` serves it. See ``docs/architecture.md``."""

from control_plane.app.wiring import create_app, run_service

__all__ = ["create_app", "run_service"]
