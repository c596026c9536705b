"""Typed application keys shared by the API modules (aiohttp ``web.AppKey``)."""

from __future__ import annotations

from aiohttp import web

from control_plane.prober import Prober
from control_plane.probes import ProbeBook
from control_plane.registry.service import RegistryService
from control_plane.settings import Settings
from control_plane.sidecar.link import SidecarLink
from control_plane.store.protocol import RegistryStore
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.pipeline import ConfigPipeline

__all__ = ["PIPELINE", "PROBER", "PROBES", "REGISTRY", "SETTINGS", "SIDECAR", "STORE", "XDS_CACHE"]

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", RegistryStore)
REGISTRY = web.AppKey("registry", RegistryService)
PROBES = web.AppKey("probes", ProbeBook)
PROBER = web.AppKey("prober", Prober)
XDS_CACHE = web.AppKey("xds_cache", SnapshotCache)
PIPELINE = web.AppKey("pipeline", ConfigPipeline)
SIDECAR = web.AppKey("sidecar", SidecarLink)
