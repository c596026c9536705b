"""A bounded schemathesis run: every operation of /openapi.json against a live app.

The app (real SQLite store, the example integrations file) is served on a real loopback
socket from a background thread: aiohttp is neither ASGI nor WSGI, and schemathesis calls
it over HTTP like any client. Envoy's admin API is a small loopback server speaking its
JSON wire format (``/ready``, ``/stats?format=json``, ``/clusters?format=json``), so the
status endpoints answer 200 with Envoy-shaped numbers; no xDS client is connected, so
``/health/ready`` answers its documented 503.

The checks are the ones the acceptance criteria name: no server error (the only 5xx
allowed is a 503 the document declares for that operation), and every response — status,
content type, headers, body — as the document describes it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import CheckContext
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from control_plane.api.routes import openapi_document
from control_plane.app import create_app
from tests.support.app import app_settings

MAX_EXAMPLES = 25
DOCUMENT = openapi_document()

# The status page's event stream never ends by design (a request would only time out);
# tests/integration/test_security/test_status_page.py reads it.
schema = schemathesis.openapi.from_dict(DOCUMENT).exclude(path="/ui/stream")
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=MAX_EXAMPLES
)
schema.config.phases.update(phases=["examples", "coverage", "fuzzing"])


def _fake_envoy_admin() -> web.Application:
    """Envoy's admin API as Envoy 1.40 answers it (proto3 JSON: zero values omitted)."""
    stats = {
        "cluster.stripe.circuit_breakers.default.rq_open": 0,
        "cluster.stripe.circuit_breakers.default.remaining_rq": 200,
        "cluster.stripe.outlier_detection.ejections_active": 1,
        "cluster.stripe.outlier_detection.ejections_enforced_total": 3,
        "stripe.http_local_rate_limit.ok": 40,
        "stripe.http_local_rate_limit.rate_limited": 2,
        "cluster.auth0.circuit_breakers.default.rq_pending_open": 1,
    }

    def host(port: int, **health: bool) -> dict[str, Any]:
        return {
            "address": {"socket_address": {"address": "192.0.2.10", "port_value": port}},
            "stats": [{"name": "cx_total", "value": "7"}, {"name": "rq_error"}],
            "health_status": {"eds_health_status": "HEALTHY", **health},
            "weight": 1,
        }

    clusters = {
        "cluster_statuses": [
            {
                "name": "stripe",
                "added_via_api": True,
                "host_statuses": [host(443, failed_outlier_check=True)],
                "circuit_breakers": {"thresholds": [{"max_connections": 100}]},
            },
            {"name": "auth0", "added_via_api": True, "host_statuses": [host(443)]},
        ]
    }

    async def ready(request: web.Request) -> web.Response:
        return web.Response(text="LIVE\n")

    async def stats_json(request: web.Request) -> web.Response:
        entries: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in stats.items()]
        entries.append({"name": "cluster_manager.cds.version_text", "value": "v1"})
        return web.json_response({"stats": entries})

    async def clusters_json(request: web.Request) -> web.Response:
        return web.json_response(clusters)

    admin = web.Application()
    admin.router.add_get("/ready", ready)
    admin.router.add_get("/stats", stats_json)
    admin.router.add_get("/clusters", clusters_json)
    return admin


class LiveServer:
    """The app and a fake Envoy admin on 127.0.0.1 free ports, run by an event loop in a
    daemon thread."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runners: list[web.AppRunner] = []

    def start(self) -> str:
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)

    async def _serve(self, app: web.Application) -> int:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return int(runner.addresses[0][1])

    async def _start(self) -> str:
        admin_port = await self._serve(_fake_envoy_admin())
        settings = app_settings(
            self._root,
            envoy_admin_port=admin_port,
            auth="disabled",  # explicit: this run fuzzes the API, not authentication
        )
        environ = {
            "STRIPE_SECRET_KEY": "sk_test_never_shown",
            # No periodic probing in the background; POST .../test still probes (briefly).
            "INTEGRATION_SERVICE_PROBE_ENABLED": "false",
            "INTEGRATION_SERVICE_PROBE_TIMEOUT": "1",
        }
        port = await self._serve(create_app(settings, environ=environ))
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        async def cleanup() -> None:
            for runner in reversed(self._runners):
                await runner.cleanup()

        asyncio.run_coroutine_threadsafe(cleanup(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


def server_errors_only_where_documented(
    ctx: CheckContext, response: Any, case: schemathesis.Case[Any]
) -> bool | None:
    """No 5xx at all, except a 503 the document declares for this operation (a dependency
    the test does not provide, e.g. an xDS client for /health/ready)."""
    status = int(response.status_code)
    if status < 500:
        return None
    declared = DOCUMENT["paths"][case.operation.path][case.method.lower()]["responses"]
    if status == 503 and "503" in declared:
        return None
    raise AssertionError(f"server error {status} from {case.method} {case.path}")


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = LiveServer(tmp_path_factory.mktemp("schemathesis"))
    try:
        yield server.start()
    finally:
        server.stop()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,  # the same inputs on every run: a shared suite must not flake
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_matches_its_openapi_document(case: schemathesis.Case[Any], base_url: str) -> None:
    case.call_and_validate(
        base_url=base_url,
        checks=[
            server_errors_only_where_documented,
            status_code_conformance,
            content_type_conformance,
            response_headers_conformance,
            response_schema_conformance,
        ],
        timeout=15,
    )
