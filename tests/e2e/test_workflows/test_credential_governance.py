"""Credential governance against the real service and real Envoy, with authentication on.

A tenant admin of ``acme`` tries to make Envoy deliver secrets to a host it controls (a
loopback upstream on 127.0.0.2 stands in for the attacker): another tenant's reference, the
service's own admin key, files outside the secret roots (plain, traversal, symlink), and a
granted credential moved to another host by a PUT. Each is refused before anything is
stored and the attacker never sees a request. Then a grant narrowed while traffic flows
takes the credential out of Envoy at once, says so in the status, and emits an event.
(Regression: each of these was accepted with 201 and the value delivered.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.envoy import dynamic_listeners
from tests.support.ports import free_port
from tests.support.stack import Stack, running_stack
from tests.support.upstream import Upstream, running_upstream
from tests.support.waiting import wait_until

pytestmark = pytest.mark.envoy

WEATHER = "wk-governed-" + "7" * 12  # acme's key, granted for the legitimate host
BILLING = "sk_live_billing_" + "3" * 12  # billing's key, granted to billing only
HOSTILE_FILE = "hostile-file-" + "5" * 12  # a file outside the secret roots


def _grants(weather_hosts: list[str]) -> str:
    return json.dumps(
        {
            "grants": [
                {"ref": "env:GOV_WEATHER_KEY", "tenants": ["acme"], "hosts": weather_hosts},
                {"ref": "env:GOV_BILLING_KEY", "tenants": ["billing"], "hosts": ["127.0.0.2"]},
            ]
        }
    )


def _doc(ident: str, upstream: str, ref: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": ident,
        "kind": "http",
        "tenant": "acme",
        "upstream": upstream,
        "listen_port": free_port(),
        "credentials": {"api_key": ref},
        **extra,
    }


async def _acme_admin(stack: Stack, api: aiohttp.ClientSession) -> dict[str, str]:
    body = {"name": "acme-admin", "role": "admin", "tenant": "acme"}
    async with api.post("/api-keys", json=body, headers=stack.service.admin_headers) as r:
        assert r.status == 201, await r.text()
        return {"Authorization": f"Bearer {(await r.json())['key']}"}


async def _refused(
    stack: Stack, api: aiohttp.ClientSession, acme: dict[str, str], doc: dict[str, Any]
) -> list[dict[str, Any]]:
    async with api.post("/integrations", json=doc, headers=acme) as r:
        body = await r.json()
        assert r.status == 422, body
    async with api.get(f"/integrations/{doc['id']}", headers=acme) as r:
        assert r.status == 404, "nothing stored"
    async with api.get("/audit", headers=stack.service.admin_headers) as r:
        targets = {e["target"] for e in (await r.json())["items"]}
        assert f"integration/{doc['id']}" not in targets, "nothing audited"
    assert doc["id"] not in dynamic_listeners(await stack.config_dump()), "nothing in Envoy"
    errors: list[dict[str, Any]] = body["errors"]
    return errors


async def test_exfiltration_attempts_are_refused_before_storing(tmp_path: Path) -> None:
    roots = tmp_path / "secrets"
    roots.mkdir()
    (roots / "weather").write_text(WEATHER)
    outside = tmp_path / "outside"
    outside.write_text(HOSTILE_FILE)
    (roots / "link").symlink_to(outside)
    env = {
        "GOV_WEATHER_KEY": WEATHER,
        "GOV_BILLING_KEY": BILLING,
        "INTEGRATION_SERVICE_FILE_ROOTS": str(roots),
    }
    async with (
        running_upstream() as legit,
        running_upstream(host="127.0.0.2") as attacker,
        running_stack(
            tmp_path, "integrations: []\n", env=env, auth=True, grants=_grants(["127.0.0.1"])
        ) as stack,
        aiohttp.ClientSession(stack.service.base_url) as api,
    ):
        acme = await _acme_admin(stack, api)
        evil = attacker.url
        attempts = {
            "another tenant's reference": ("env:GOV_BILLING_KEY", "not-granted"),
            "the service's admin key": ("env:INTEGRATION_SERVICE_ADMIN_KEY", "reserved"),
            "the admin key's own target": ("env:E2E_ADMIN_KEY", "reserved"),
            "the database URL": ("env:POSTGRESQL_URL", "reserved"),
            "a system file": ("file:/etc/hostname", "file-root"),
            "a traversal": (f"file:{roots}/../outside", "file-root"),
            "a symlink out of the root": (f"file:{roots}/link", "file-root"),
            "a granted reference to another host": ("env:GOV_WEATHER_KEY", "destination"),
        }
        for index, (what, (ref, rule)) in enumerate(attempts.items()):
            errors = await _refused(stack, api, acme, _doc(f"evil-{index}", evil, ref))
            credential = [e for e in errors if e["pointer"] == "/credentials/api_key"]
            assert credential and credential[0]["rule"] == rule, (what, errors)
            assert ref in credential[0]["message"], what

        # A granted reference to its bound host is accepted and delivered there...
        doc = _doc("weather", legit.url, "env:GOV_WEATHER_KEY")
        async with api.post("/integrations", json=doc, headers=acme) as r:
            assert r.status == 201, await r.text()
        await wait_until(
            lambda: _listens(stack, "weather"), deadline_s=20, message="listener pushed"
        )
        async with stack.session.get(f"http://127.0.0.1:{doc['listen_port']}/ok") as r:
            assert r.status == 200
        assert legit.requests[-1]["headers"]["Authorization"] == f"Bearer {WEATHER}"

        # ... and a PUT that moves it to the attacker is refused, and changes nothing.
        moved = {**doc, "upstream": evil}
        async with api.put("/integrations/weather", json=moved, headers=acme) as r:
            body = await r.json()
            assert r.status == 422, body
        assert [e["rule"] for e in body["errors"]] == ["destination"]
        async with api.get("/integrations/weather", headers=acme) as r:
            assert (await r.json())["upstream"]["port"] == legit.port

        # Every refusal at once: an invalid field, a refused reference and the SSRF rule.
        combined = _doc("mixed", "http://169.254.169.254/", "env:GOV_BILLING_KEY", bogus=1)
        async with api.post("/integrations", json=combined, headers=acme) as r:
            body = await r.json()
            assert r.status == 422, body
        assert body["rule"] == "metadata"
        assert {e.get("rule") for e in body["errors"]} >= {"metadata", "not-granted"}
        assert any("bogus" in e["message"] for e in body["errors"])

    assert attacker.requests == [], "the attacker's host never saw a request"
    log = stack.service.log()
    for value in (WEATHER, BILLING, HOSTILE_FILE, stack.service.admin_key):
        assert value not in log


async def test_a_narrowed_grant_withholds_the_credential_at_once(tmp_path: Path) -> None:
    env = {"GOV_WEATHER_KEY": WEATHER, "GOV_BILLING_KEY": BILLING}
    async with (
        running_upstream() as upstream,
        running_stack(
            tmp_path, "integrations: []\n", env=env, auth=True, grants=_grants(["127.0.0.1"])
        ) as stack,
        aiohttp.ClientSession(stack.service.base_url) as api,
    ):
        acme = await _acme_admin(stack, api)
        doc = _doc("weather", upstream.url, "env:GOV_WEATHER_KEY")
        async with api.post("/integrations", json=doc, headers=acme) as r:
            assert r.status == 201, await r.text()
        await wait_until(lambda: _listens(stack, "weather"), deadline_s=20, message="pushed")
        url = f"http://127.0.0.1:{doc['listen_port']}/traffic"
        async with stack.session.get(url) as r:
            assert r.status == 200
        assert _auth(upstream) == f"Bearer {WEATHER}"

        # The operator narrows the grant to another host while traffic flows.
        stack.service.grants_file.write_text(_grants(["api.weather.example.com"]))

        async def withheld() -> bool:
            async with stack.session.get(url) as r:
                assert r.status == 200, "traffic keeps flowing, without the credential"
            return _auth(upstream) is None

        await wait_until(withheld, deadline_s=15, message="credential withheld")
        async with api.get("/integrations/weather/status", headers=acme) as r:
            status = await r.json()
        assert status["credentials_withheld"]["env:GOV_WEATHER_KEY"]["rule"] == "destination"
        async with api.get("/metrics", headers=stack.service.admin_headers) as r:
            metrics = await r.text()
        assert 'type="integration.credential_withheld"' in metrics
        dump = json.dumps(await stack.config_dump())
        assert WEATHER not in dump, "the value left Envoy's configuration"

        # Restoring the grant restores the credential.
        stack.service.grants_file.write_text(_grants(["127.0.0.1"]))

        async def restored() -> bool:
            async with stack.session.get(url) as r:
                assert r.status == 200
            return _auth(upstream) == f"Bearer {WEATHER}"

        await wait_until(restored, deadline_s=15, message="credential restored")


def _auth(upstream: Upstream) -> str | None:
    value = upstream.requests[-1]["headers"].get("Authorization")
    return None if value is None else str(value)


async def _listens(stack: Stack, ident: str) -> bool:
    # Active, not merely known: a warming listener does not accept connections yet.
    return "active_state" in dynamic_listeners(await stack.config_dump()).get(ident, {})
