"""Brokered tokens through real Envoy, against a loopback token endpoint and an upstream
that checks every bearer token it receives.

Shorter but equivalent versions of the acceptance runs (tokens of 3 s for 10 s of load; an
outage of 7 s); the full-length ones are ``bench/tokens.py``. What must hold: while the
provider is up no request reaches the upstream with an expired or missing token; while it
is down requests carry the last token until just before it expires, then none -- never an
expired one -- and injection resumes within one backoff step of its recovery; the token
appears in no log line, API response, event or audit entry.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_tokens.load import constant_load
from tests.support.fake_token_endpoint import FakeTokenEndpoint, running_token_endpoint
from tests.support.ports import free_port
from tests.support.stack import Stack, running_stack
from tests.support.waiting import wait_until

pytestmark = pytest.mark.envoy

CLIENT_ID = "e2e-token-client"
CLIENT_SECRET = "e2e-token-client-secret-4hQ9"
AUDIENCE = "https://billing.example.test/"
LIFETIME = 3.0
BACKOFF_MAX = 1.0


def _registry(fake: FakeTokenEndpoint, ports: dict[str, int]) -> str:
    credentials = {"client_id": "env:E2E_TOKEN_ID", "client_secret": "env:E2E_TOKEN_SECRET"}
    items = [
        {
            "id": "billing",
            "kind": "http",
            "upstream": fake.url,
            "listen_port": ports["billing"],
            "credentials": credentials,
            "settings": {
                "token": {
                    "token_url": fake.token_url,
                    "auth_method": "client_secret_basic",
                    "audience": AUDIENCE,
                    "scopes": ["invoices:read"],
                }
            },
        },
        {
            "id": "auth0",
            "kind": "auth0",
            "upstream": fake.url,
            "listen_port": ports["auth0"],
            "credentials": credentials,
            "settings": {"audience": AUDIENCE},
        },
    ]
    return json.dumps({"integrations": items})


@asynccontextmanager
async def token_stack(tmp_path: Path) -> AsyncIterator[tuple[Stack, FakeTokenEndpoint]]:
    async with running_token_endpoint(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        expires_in=LIFETIME,
        require_audience=True,
    ) as fake:
        ports = {"billing": free_port(), "auth0": free_port()}
        env = {
            "E2E_TOKEN_ID": CLIENT_ID,
            "E2E_TOKEN_SECRET": CLIENT_SECRET,
            "INTEGRATION_SERVICE_TOKEN_BACKOFF_BASE": "0.25",
            "INTEGRATION_SERVICE_TOKEN_BACKOFF_MAX": str(BACKOFF_MAX),
        }
        async with running_stack(tmp_path, _registry(fake, ports), env=env, ports=ports) as stack:
            for ident in ports:
                await wait_until(
                    lambda ident=ident: _state(stack, ident, "valid"),  # type: ignore[misc]
                    deadline_s=20,
                    message=f"{ident} token valid",
                )
            yield stack, fake


async def _status(stack: Stack, ident: str) -> dict[str, Any]:
    body: dict[str, Any] = await stack.get_json(stack.api(f"/integrations/{ident}/status"))
    return body


async def _state(stack: Stack, ident: str, state: str) -> bool:
    token = (await _status(stack, ident))["token"]
    return token is not None and token["state"] == state


async def _through(stack: Stack, ident: str) -> int:
    async with stack.session.get(
        stack.sidecar(ident, "/v1/invoices"), headers={"Authorization": "Bearer app-placeholder"}
    ) as response:
        return response.status


async def test_load_never_meets_an_expired_or_missing_token(tmp_path: Path) -> None:
    async with token_stack(tmp_path) as (stack, fake):
        statuses = await constant_load(
            stack.sidecar("billing", "/v1/invoices"), rate=100, duration_s=10
        )
        auth0 = await constant_load(
            stack.sidecar("auth0", "/api/v2/clients"), rate=20, duration_s=4
        )
        requests = sum(fake.verdicts.values())
        assert requests == sum(statuses.values()) + sum(auth0.values())
        # Zero requests with an expired, missing or foreign (the app's) token.
        assert fake.verdicts["ok"] == requests, dict(fake.verdicts)
        assert statuses == {200: 1000} and auth0 == {200: 80}
        # The whole run took a handful of tokens: refreshed ahead, not per request. Every
        # token request named the audience (Auth0 refuses one without).
        assert all(r["form"].get("audience") == AUDIENCE for r in fake.token_requests)
        assert fake.requests_served <= 2 * (14 / (LIFETIME * 0.86) + 2)
        async with stack.envoy.admin() as admin:
            stats = await admin.stats()
        injected = {k: v for k, v in stats.items() if k.endswith("credential_injector.injected")}
        assert sum(injected.values()) >= 1080, injected


async def test_outage_withdraws_then_recovers_and_nothing_leaks(tmp_path: Path) -> None:
    async with token_stack(tmp_path) as (stack, fake):
        fake.fail = True
        outage_started = time.time()
        # Until the last token's withdrawal requests carry it; then none -- never expired.
        await wait_until(
            lambda: _state(stack, "billing", "expired"),
            deadline_s=LIFETIME + 3,
            message="token withdrawn at expiry",
        )
        during = await constant_load(stack.sidecar("billing", "/v1/x"), rate=50, duration_s=3)
        assert during == {401: 150}  # the vendor's answer to a request without a token
        assert fake.verdicts["expired"] == 0 and fake.verdicts["unknown"] == 0
        status = await _status(stack, "billing")
        token = status["token"]
        assert token["injecting"] is False and token["consecutive_failures"] >= 2
        assert "503" in token["last_error"]
        health = await stack.get_json(stack.api("/health"))
        assert health["checks"]["tokens"]["ok"] is False
        assert time.time() - outage_started < LIFETIME + 6

        fake.fail = False
        # Recovery: injection resumes within one backoff step (BACKOFF_MAX) of the
        # provider's return, plus the time the push takes.
        await wait_until(
            lambda: _state(stack, "billing", "valid"),
            deadline_s=BACKOFF_MAX + 2,
            message="token injected again within one backoff step",
        )
        await wait_until(lambda: _through_ok(stack), deadline_s=2, message="200 again")
        assert fake.verdicts["expired"] == 0

        # -- nothing leaks: log, API responses, events, audit entries -------------------
        forbidden = {"client secret": CLIENT_SECRET, **{f"token {t[:12]}": t for t in fake.issued}}
        responses = []
        paths = [
            "/integrations",
            "/integrations/billing",
            "/integrations/billing/status",
            "/integrations/billing/health",
            "/integrations/auth0/status",
            "/health",
            "/health/ready",
            "/metrics",
            "/audit",
            "/openapi.json",
        ]
        for path in paths:
            async with stack.session.get(stack.api(path)) as response:
                responses.append(f"{path} {dict(response.headers)} {await response.text()}")
        metrics = next(r for r in responses if r.startswith("/metrics"))
        assert (
            'integration_service_token_refresh_total{integration="billing",result="failure"}'
            in metrics
        )
        assert "integration_service_token_seconds_to_expiry" in metrics
        database = stack.service.workdir / "data" / "registry.sqlite3"
        with sqlite3.connect(database) as conn:
            events = [row[0] for row in conn.execute("SELECT envelope FROM outbox")]
            audit = [json.dumps(row) for row in conn.execute("SELECT * FROM audit_log")]
        kinds = {json.loads(e)["type"] for e in events}
        assert {"integration.token_refreshed", "integration.token_refresh_failed"} <= kinds
        log = stack.service.log()
        assert "token refresh failed" in log
        for label, value in forbidden.items():
            for where, texts in (
                ("log", [log]),
                ("response", responses),
                ("event", events),
                ("audit entry", audit),
            ):
                leaked = [t for t in texts if value in t]
                assert not leaked, f"{label} found in a {where}: {leaked[0][:300]}"


async def _through_ok(stack: Stack) -> bool:
    return await _through(stack, "billing") == 200
