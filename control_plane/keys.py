"""Typed application keys (aiohttp ``web.AppKey``): the one place that names what the
wiring (``control_plane.app``) puts into the application and the HTTP handlers
(``control_plane.api``) read from it.

This module sits below both and above every service it names, so that no service ever
needs to import the HTTP package to be wired in.
"""

from __future__ import annotations

from collections import deque

from aiohttp import web

from control_plane.discovery.consul import ConsulRuntime
from control_plane.discovery.dns import VettedResolver
from control_plane.discovery.membership import FleetMembership
from control_plane.discovery.quota import GlobalUsage
from control_plane.events.feed import LiveFeed
from control_plane.events.runtime import EventsRuntime
from control_plane.observability.metrics import ServiceMetrics
from control_plane.probing.book import ProbeBook
from control_plane.probing.runner import Prober
from control_plane.registry.service import RegistryService
from control_plane.security.context import SecurityContext
from control_plane.settings import Settings
from control_plane.sidecar.accesslog import CacheLedger
from control_plane.sidecar.link import SidecarLink
from control_plane.store.health import StoreHealth
from control_plane.store.protocol import RegistryStore
from control_plane.tokens.broker import TokenBroker
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.fleet import Fleet
from control_plane.xds.pipeline import ConfigPipeline

__all__ = [
    "CACHE_LEDGER",
    "CONSUL",
    "DNS_RESOLVER",
    "EVENTS",
    "FLEET",
    "GLOBAL_USAGE",
    "MEMBERSHIP",
    "METRICS",
    "PIPELINE",
    "PROBER",
    "PROBES",
    "RATE_SAMPLES",
    "REGISTRY",
    "SECURITY",
    "SETTINGS",
    "SIDECAR",
    "STORE",
    "STORE_HEALTH",
    "TOKENS",
    "UI_FEED",
    "XDS_CACHE",
]

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", RegistryStore)
STORE_HEALTH = web.AppKey("store_health", StoreHealth)
REGISTRY = web.AppKey("registry", RegistryService)
PROBES = web.AppKey("probes", ProbeBook)
PROBER = web.AppKey("prober", Prober)
XDS_CACHE = web.AppKey("xds_cache", SnapshotCache)
PIPELINE = web.AppKey("pipeline", ConfigPipeline)
SIDECAR = web.AppKey("sidecar", SidecarLink)
SECURITY = web.AppKey("security", SecurityContext)
EVENTS = web.AppKey("events", EventsRuntime)
CONSUL = web.AppKey("consul", ConsulRuntime)
DNS_RESOLVER = web.AppKey("dns_resolver", VettedResolver)
METRICS = web.AppKey("metrics", ServiceMetrics)
CACHE_LEDGER = web.AppKey("cache_ledger", CacheLedger)
MEMBERSHIP = web.AppKey("membership", FleetMembership)
GLOBAL_USAGE = web.AppKey("global_usage", GlobalUsage)
# The shared topology only: workloads and the TLS-gated xDS server.
FLEET = web.AppKey("fleet", Fleet)
TOKENS = web.AppKey("tokens", TokenBroker)
# Per integration: (monotonic time, allowed, rate_limited counters) samples of the last minute.
RATE_SAMPLES = web.AppKey("rate_samples", dict[str, deque[tuple[float, float, float]]])
# The status page's live feed: one production of the overview rows per tick, shared by
# every open page (control_plane.api.ui.live).
UI_FEED = web.AppKey("ui_feed", LiveFeed)
