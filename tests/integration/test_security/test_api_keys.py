"""API keys: shown once, hashed at rest, revocable and expiring at once; the bootstrap
key; the configured admin key; and the explicit ``auth: disabled`` mode."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import pytest

from control_plane.security.api_keys import hash_key
from tests.integration.test_security.conftest import ADMIN, ADMIN_KEY, MakeSecure, Secure, bearer


async def test_key_is_shown_once_and_stored_as_a_hash(secure: Secure, tmp_path: Path) -> None:
    key = secure.keys["viewer"]
    assert key.startswith(f"isk_{secure.ids['viewer']}_")
    listing = await secure.client.get("/api-keys", headers=ADMIN)
    assert listing.headers["Cache-Control"] == "no-store"
    text = await listing.text()
    assert key not in text and key.split("_", 2)[2] not in text
    assert hash_key(key) not in text, "not even the hash is served"
    items = {i["id"]: i for i in (await listing.json())["items"]}
    assert items[secure.ids["viewer"]]["state"] == "active"
    assert items[secure.ids["viewer"]]["prefix"] == f"isk_{secure.ids['viewer']}"
    (db,) = tmp_path.glob("app*/data/registry.sqlite3")
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT hash FROM api_keys WHERE id = ?", (secure.ids["viewer"],))
        assert rows.fetchone()[0] == hash_key(key)
    assert key.encode() not in db.read_bytes()


async def test_revoked_key_fails_on_the_very_next_request(secure: Secure) -> None:
    headers = secure.as_("operator")
    assert (await secure.client.get("/integrations", headers=headers)).status == 200
    revoke = await secure.client.delete(f"/api-keys/{secure.ids['operator']}", headers=ADMIN)
    assert revoke.status == 204
    after = await secure.client.get("/integrations", headers=headers)
    assert after.status == 401
    assert "revoked" in (await after.json())["detail"]
    again = await secure.client.delete(f"/api-keys/{secure.ids['operator']}", headers=ADMIN)
    assert again.status == 204, "revoking twice is harmless"
    listing = await (await secure.client.get("/api-keys", headers=ADMIN)).json()
    state = {i["id"]: i["state"] for i in listing["items"]}
    assert state[secure.ids["operator"]] == "revoked"


async def test_a_key_may_revoke_itself(secure: Secure) -> None:
    own = secure.as_("admin")
    assert (
        await secure.client.delete(f"/api-keys/{secure.ids['admin']}", headers=own)
    ).status == 204
    assert (await secure.client.get("/api-keys", headers=own)).status == 401


async def test_expired_key_fails(secure: Secure) -> None:
    key = await secure.new_key("short", "viewer", "acme", expires_in=1)
    assert (await secure.client.get("/integrations", headers=bearer(key))).status == 200
    await asyncio.sleep(1.2)
    response = await secure.client.get("/integrations", headers=bearer(key))
    assert response.status == 401
    assert "expired" in (await response.json())["detail"]


async def test_key_creation_rules(secure: Secure) -> None:
    tenant_admin = secure.as_("admin")
    cases = [
        ({"name": "x", "role": "root"}, 422),
        ({"role": "viewer"}, 422),
        ({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}, 422),
        ({"name": "x", "expires_in": 0}, 422),
        ({"name": "x", "surprise": 1}, 422),
        ({"name": "x", "tenant": "globex"}, 403),
        ({"name": "x", "tenant": "*"}, 403),
    ]
    for body, status in cases:
        response = await secure.client.post("/api-keys", json=body, headers=tenant_admin)
        assert response.status == status, (body, await response.text())
    ok = await secure.client.post("/api-keys", json={"name": "mine"}, headers=tenant_admin)
    assert ok.status == 201
    created = await ok.json()
    assert (created["tenant"], created["role"]) == ("acme", "viewer")
    # tenant admins see and revoke only their tenant's keys
    ids = [
        i["id"]
        for i in (await (await secure.client.get("/api-keys", headers=tenant_admin)).json())[
            "items"
        ]
    ]
    assert secure.ids["other"] not in ids and created["id"] in ids
    foreign = await secure.client.delete(f"/api-keys/{secure.ids['other']}", headers=tenant_admin)
    assert foreign.status == 404
    global_key = await secure.client.post(
        "/api-keys", json={"name": "g", "tenant": "*"}, headers=ADMIN
    )
    assert global_key.status == 201


async def test_x_api_key_header_and_unsupported_schemes(secure: Secure) -> None:
    key = secure.keys["viewer"]
    assert (await secure.client.get("/integrations", headers={"X-API-Key": key})).status == 200
    basic = await secure.client.get("/integrations", headers={"Authorization": "Basic eDp5"})
    assert basic.status == 401
    none = await secure.client.get("/integrations")
    assert none.status == 401
    assert none.headers["WWW-Authenticate"] == 'Bearer realm="integration-service"'


async def test_bootstrap_key_printed_once_to_stderr_not_the_log(
    make_secure: MakeSecure,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    s = await make_secure(admin_key=None)
    err = capsys.readouterr().err
    (line,) = [ln for ln in err.splitlines() if "isk_bootstrap_" in ln]
    key = line.split()[-1]
    assert key.startswith("isk_bootstrap_")
    assert all(key not in r.getMessage() and key not in str(r.__dict__) for r in caplog.records)
    assert (await s.client.get("/api-keys", headers=bearer(key))).status == 200
    assert (await s.client.get("/api-keys", headers=ADMIN)).status == 401, "admin_key unset"
    # a restart on the same store prints nothing: a key exists
    await s.client.close()
    again = await make_secure(admin_key=None, data_dir=tmp_path / "app0" / "data")
    assert "isk_" not in capsys.readouterr().err
    assert (await again.client.get("/api-keys", headers=bearer(key))).status == 200


async def test_configured_admin_key_from_a_file(make_secure: MakeSecure, tmp_path: Path) -> None:
    path = tmp_path / "admin.key"
    path.write_text(ADMIN_KEY + "\n")
    s = await make_secure(admin_key=f"file:{path}")
    assert (await s.client.get("/audit", headers=ADMIN)).status == 200


async def test_auth_disabled_says_so_everywhere(
    make_secure: MakeSecure, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    s = await make_secure(auth="disabled")
    assert any("AUTHENTICATION IS DISABLED" in r.getMessage() for r in caplog.records)
    for path in ("/integrations", "/health/live", "/no/such/route", "/audit"):
        response = await s.client.get(path)
        assert response.headers["X-Integration-Service-Auth"] == "disabled", path
        assert response.status != 401
    secured = await make_secure()
    assert "X-Integration-Service-Auth" not in (await secured.client.get("/health/live")).headers


async def test_metrics_can_be_protected(make_secure: MakeSecure) -> None:
    open_metrics = await make_secure()
    assert (await open_metrics.client.get("/metrics")).status == 200
    closed = await make_secure(metrics_auth=True)
    assert (await closed.client.get("/metrics")).status == 401
    assert (await closed.client.get("/metrics", headers=ADMIN)).status == 200
    assert (await closed.client.get("/health/ready")).status in (200, 503)
