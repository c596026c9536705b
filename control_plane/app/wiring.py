"""Wiring and lifecycle: ``create_app(settings)`` builds the aiohttp application.

Background work lives in ``cleanup_ctx`` generators (aiohttp ``examples/background_tasks``)
so start-up and shutdown run in a fixed order — store, registry, xDS server, Envoy — and
in reverse on the way down. Nothing happens at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from aiohttp import web

from control_plane.api import health
from control_plane.api.metrics import install_metrics, metrics_middleware
from control_plane.api.middleware import correlation_middleware, errors_middleware
from control_plane.api.routes import ROUTE_TABLES
from control_plane.api.ui import install_ui
from control_plane.app.accesslogs import install_access_logs
from control_plane.app.consul import install_consul
from control_plane.app.dns import install_dns
from control_plane.app.events import install_events
from control_plane.app.fleet import create_fleet, install_fleet
from control_plane.app.membership import install_membership
from control_plane.app.ratelimit import install_ratelimit
from control_plane.app.security import install_security
from control_plane.app.tokens import install_tokens
from control_plane.keys import (
    CACHE_LEDGER,
    FLEET,
    PIPELINE,
    PROBER,
    PROBES,
    RATE_SAMPLES,
    REGISTRY,
    SETTINGS,
    SIDECAR,
    STORE,
    STORE_HEALTH,
    TOKENS,
    XDS_CACHE,
)
from control_plane.observability.logging import configure_logging
from control_plane.probing.book import ProbeBook
from control_plane.probing.runner import Prober, ProbeSchedule, running_prober
from control_plane.registry.credential_policy import CredentialPolicy
from control_plane.registry.grants import GrantsFile
from control_plane.registry.service import RegistryService
from control_plane.settings import Settings
from control_plane.sidecar.accesslog import CacheLedger
from control_plane.sidecar.bootstrap import sidecar_bootstrap
from control_plane.sidecar.link import SidecarLink
from control_plane.sidecar.supervisor import EnvoySupervisor
from control_plane.sidecar.xds_port import bind_xds
from control_plane.store.factory import create_store
from control_plane.store.health import StoreHealth
from control_plane.store.protocol import RegistryStore
from control_plane.xds.cache import SnapshotCache
from control_plane.xds.config_state import node_config
from control_plane.xds.pipeline import ConfigPipeline
from control_plane.xds.server import serve as serve_xds
from control_plane.xds.server import stop_server as stop_xds

__all__ = ["create_app", "run_service"]

log = logging.getLogger(__name__)

# How often the store is pinged for the integration_service_store_up metric.
STORE_PING_S = 5.0


async def _registry_ctx(app: web.Application) -> AsyncIterator[None]:
    store = app[STORE]
    await store.open()
    registry = app[REGISTRY]
    registry.subscribe(app[PIPELINE].apply)
    await registry.start()
    watcher = asyncio.create_task(registry.watch_file(), name="integrations-file-watch")
    pinger = asyncio.create_task(app[STORE_HEALTH].watch(STORE_PING_S), name="store-health")
    yield
    for task in (watcher, pinger):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await store.close()


async def _xds_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    host, wanted_port = settings.xds_host, settings.xds_port
    if settings.topology == "shared":
        host, wanted_port = "127.0.0.1", settings.probe_xds_port
    server, port = await bind_xds(
        wanted_port,
        settings.data_dir,
        host,
        lambda wanted: serve_xds(app[XDS_CACHE], host, wanted),
    )
    app[SIDECAR].xds_port = port
    log.info("xDS server listening", extra={"host": host, "port": port})
    yield
    await stop_xds(server)


async def _prober_ctx(app: web.Application) -> AsyncIterator[None]:
    """Periodic health checks of every enabled integration, through the sidecar."""
    async with running_prober(app[PROBER], lambda: app[REGISTRY].view):
        yield


def _envoy_ctx(enabled: bool):  # type: ignore[no-untyped-def]
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if not enabled:
            yield
            return
        settings = app[SETTINGS]
        link = app[SIDECAR]
        assert link.xds_port is not None
        bootstrap = sidecar_bootstrap(settings, link.xds_port)
        supervisor = EnvoySupervisor(
            bootstrap, settings.data_dir / "envoy", concurrency=settings.envoy_concurrency
        )
        link.supervisor = supervisor
        await supervisor.start()
        log.info("Envoy started", extra={"pid": supervisor.pid, "admin": supervisor.admin_url})
        yield
        await supervisor.stop()

    return ctx


async def _envoy_ready(app: web.Application) -> dict[str, object]:
    try:
        async with app[SIDECAR].admin(timeout=2.0) as admin:
            ok = await admin.ready()
        return {"ok": ok}
    except Exception as exc:  # unreachable admin means "not ready"
        return {"ok": False, "detail": str(exc)}


async def _config_acked(app: web.Application) -> dict[str, object]:
    return node_config(app[XDS_CACHE], app[SETTINGS].envoy_node_id, app[PIPELINE].state)


def _token_state(app: web.Application, integration_id: str) -> tuple[str, str | None] | None:
    broker = app.get(TOKENS)
    status = broker.status(integration_id) if broker is not None else None
    return None if status is None else (str(status["state"]), status["last_error"])


def credential_policy(settings: Settings) -> CredentialPolicy:
    """The policy's parts the settings give: file roots, and the references the admin-key
    and token-encryption-key settings name (reserved like the service's own variables)."""
    reserved = frozenset(ref for ref in (settings.admin_key, settings.token_encryption_key) if ref)
    return CredentialPolicy(file_roots=settings.file_root_paths(), reserved=reserved)


def create_app(
    settings: Settings,
    *,
    store: RegistryStore | None = None,
    with_envoy: bool = False,
    environ: Mapping[str, str] | None = None,
) -> web.Application:
    app = web.Application(
        middlewares=[metrics_middleware, correlation_middleware, errors_middleware],
        # aiohttp's HTTP parser answers a request line or header past these limits itself,
        # in plain text, before any middleware runs; 8 KiB (its default) cut an over-long
        # id off that way. Past 32 KiB it still does (docs/api.md, "Limits").
        handler_args={"max_line_size": 32768, "max_field_size": 32768},
    )
    app[SETTINGS] = settings
    app[STORE] = store or create_store(settings.postgresql_url, settings.data_dir)
    app[STORE_HEALTH] = StoreHealth(app[STORE])
    env = os.environ if environ is None else environ
    app[XDS_CACHE] = SnapshotCache()
    shared = settings.topology == "shared"
    if shared:
        app[FLEET] = create_fleet(settings)
        app[PIPELINE] = ConfigPipeline(
            app[XDS_CACHE],
            data_dir=settings.data_dir,
            environ=env,
            # Paths in the application pods' Envoys, not this one's data directory.
            access_logs=False,
            cache_root=Path(settings.envoy_cache_dir),
            workloads=app[FLEET].workloads,
        )
    else:
        app[PIPELINE] = ConfigPipeline(app[XDS_CACHE], data_dir=settings.data_dir, environ=env)
    app[REGISTRY] = RegistryService(
        app[STORE],
        integrations_file=settings.integrations_file,
        rate_limits_file=settings.rate_limits_file,
        port_range=settings.listen_port_range,
        reserved_ports=settings.reserved_ports(),
        precheck=app[PIPELINE].precheck,
        grants=GrantsFile(settings.grants_file, credential_policy(settings)),
    )
    install_ratelimit(app)  # scope global: the service's address; its config file
    app[PROBES] = ProbeBook()
    app[PROBER] = Prober(
        app[PROBES],
        environ=env,
        schedule=ProbeSchedule.from_settings(settings),
        admin=lambda: app[SIDECAR].admin(timeout=2.0),
        policy=lambda: app[REGISTRY].policy,
        token_state=lambda ident: _token_state(app, ident),
    )
    app[SIDECAR] = SidecarLink(settings.envoy_node_id, settings.envoy_admin_port)
    checks: dict[str, health.Check] = {"envoy": _envoy_ready, "config": _config_acked}
    app[health.READINESS_CHECKS] = checks
    app[RATE_SAMPLES] = {}
    app[CACHE_LEDGER] = CacheLedger(app[PIPELINE].access_log_dir or settings.data_dir)
    install_metrics(app)
    app.cleanup_ctx.append(_registry_ctx)
    if shared:
        install_fleet(app)  # the TLS gate and per-workload snapshots
    # The per-pod xDS server and Envoy. In the shared topology that Envoy is the control
    # plane's own probe node: on loopback only, it runs every integration so probes and
    # the Envoy-backed API work as in a pod (docs/deployment.md, "Probes").
    app.cleanup_ctx.append(_xds_ctx)
    app.cleanup_ctx.append(_envoy_ctx(with_envoy))
    install_membership(app)  # fleet sizes for scope: fleet rate limits
    install_access_logs(app)  # after Envoy: rotates the access logs, Envoy reopens them
    app.cleanup_ctx.append(_prober_ctx)
    install_security(app, settings, os.environ if environ is None else environ)
    install_events(app)  # after the store/registry contexts: started later, stopped sooner
    install_ui(app)  # after the events: integration events refresh the status page
    install_dns(app)  # vetted resolution: hears each registry view before the pipeline
    install_tokens(app, env)  # after events (its events) and the metrics (its collector)
    install_consul(app)  # last: registered when all is up, deregistered first on shutdown
    for table in ROUTE_TABLES:
        app.add_routes(table)
    return app


_FREEZE_DELAY_S = 1.0


def _freeze_startup_heap() -> None:
    """Take what start-up built out of the cyclic garbage collector's reach.

    After start-up the heap holds the loaded registry, the translated resources and the
    first snapshot: about 106,000 GC-tracked objects at 1,000 integrations (bench B4/B6),
    most of which live as long as the process. Every full (generation-2) collection walked
    all of them with the event loop stopped: 33-50 ms each, every few seconds under API
    load or changes, measured with ``gc.callbacks``. ``gc.freeze()`` moves every object
    alive now to a permanent generation that collections skip (reference counting still
    frees them as usual); measured after it, full collections take 1-8 ms. The cost: cyclic
    garbage among these objects, should start-up state be replaced later, is never
    reclaimed, a bounded one-time amount. Only the real service does this, not the apps
    tests build with ``create_app``.

    The collector is also paused while start-up builds that heap (``run_service``): it
    allocates hundreds of thousands of objects that all survive, and each collection it
    triggered walked the survivors so far again, 0.7 s of a 6.8 s start at 10,000
    integrations (issue 20; about a tenth at 1,000 too). Start-up makes little cyclic
    garbage, and the collection below reclaims it before the freeze.
    """
    gc.collect()  # do not freeze what is already garbage
    gc.freeze()
    gc.enable()


async def run_service(settings: Settings, *, with_envoy: bool = True) -> int:
    """Serve until SIGTERM/SIGINT; SIGHUP re-reads the integrations file."""
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings, with_envoy=with_envoy)
    runner = web.AppRunner(app, access_log=None)
    gc.disable()  # until the start-up heap is built (see _freeze_startup_heap)
    try:
        await runner.setup()  # start-up contexts done: store open, first snapshot built
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
    except BaseException:
        gc.enable()
        raise
    loop = asyncio.get_running_loop()
    # A moment later, so that the full collection it makes (0.1 s at 10,000 integrations)
    # does not hold up the first snapshot's delivery to the Envoys already connecting.
    freeze = loop.call_later(_FREEZE_DELAY_S, _freeze_startup_heap)
    log.info("integration service started", extra={"settings": settings.describe()})
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task[object]] = set()

    def _reload() -> None:
        task: asyncio.Task[object] = asyncio.ensure_future(app[REGISTRY].reload_file(force=True))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, _reload)
    await stop.wait()
    freeze.cancel()
    gc.enable()  # when stopped within the delay
    log.info("shutting down")
    await runner.cleanup()
    return 0
