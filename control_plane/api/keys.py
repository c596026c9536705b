"""Typed application keys shared by the API modules (aiohttp ``web.AppKey``)."""

from __future__ import annotations

from aiohttp import web

from control_plane.registry.service import RegistryService
from control_plane.settings import Settings
from control_plane.store.protocol import RegistryStore

__all__ = ["REGISTRY", "SETTINGS", "STORE"]

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", RegistryStore)
REGISTRY = web.AppKey("registry", RegistryService)
