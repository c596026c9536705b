"""A full scenario leaves no secret value, API key or JWT in any response, log line,
event or audit entry — checked by scanning every one of them; and the audit log says who
did what."""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from control_plane.keys import STORE
from control_plane.observability.logging import JsonFormatter
from control_plane.store.protocol import AuditQuery
from tests.integration.test_security.conftest import (
    ADMIN,
    ADMIN_KEY,
    WEATHER_SECRET,
    MakeSecure,
    bearer,
    weather_doc,
)


async def test_scenario_leaks_nothing_and_is_audited(
    make_secure: MakeSecure, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    s = await make_secure()
    client = s.client
    seen: list[str] = []  # every response: status line, headers and body
    key_responses: list[str] = []  # POST /api-keys: the one place a key may appear

    async def call(method: str, path: str, headers: dict[str, str], **kw: Any) -> Any:
        response = await client.request(method, path, headers=headers, **kw)
        text = f"{response.status} {dict(response.headers)} {await response.text()}"
        (key_responses if (method, path) == ("POST", "/api-keys") else seen).append(text)
        return response

    # An admin key and an operator JWT of tenant acme.
    made = await call(
        "POST", "/api-keys", ADMIN, json={"name": "ops", "role": "admin", "tenant": "acme"}
    )
    admin_key = (await made.json())["key"]
    token = s.issuer.token(role="operator", tenant="acme")
    doc = weather_doc("scenario", description="uses a secret", settings={})
    doc["credentials"] = {"api_key": "env:WEATHER_KEY"}
    # A secret pasted where a reference belongs is refused without being echoed.
    pasted = {**doc, "credentials": {"api_key": "sk_live_" + secrets.token_hex(8)}}
    refused = await call("POST", "/integrations", bearer(admin_key), json=pasted)
    assert refused.status == 422
    created = await call("POST", "/integrations", bearer(admin_key), json=doc)
    assert created.status == 201
    tested = await call("POST", "/integrations/scenario/test", bearer(token))
    assert tested.status not in (401, 403, 404)
    rotated_doc = {**doc, "credentials": {"api_key": "env:WEATHER_KEY_V2"}}
    rotated = await call("PUT", "/integrations/scenario", bearer(admin_key), json=rotated_doc)
    assert rotated.status == 200
    new_key = (
        await (
            await call(
                "POST", "/api-keys", ADMIN, json={"name": "ops2", "role": "admin", "tenant": "acme"}
            )
        ).json()
    )["key"]
    ops_id = admin_key.split("_")[1]
    assert (await call("DELETE", f"/api-keys/{ops_id}", bearer(new_key))).status == 204
    assert (await call("DELETE", "/integrations/scenario", bearer(new_key))).status == 204
    audit = await call("GET", "/audit", ADMIN)
    entries = (await audit.json())["items"]

    # -- the audit trail -------------------------------------------------------------------
    actions = [(e["action"], e["target"], e["principal"]) for e in reversed(entries)]
    ops2_id = new_key.split("_")[1]
    assert actions == [
        ("api_key.create", f"api_key/{ops_id}", "config:admin-key"),
        ("integration.create", "integration/scenario", f"api_key:{ops_id}"),
        ("integration.test", "integration/scenario", "jwt:auth0|user-1"),
        ("integration.update", "integration/scenario", f"api_key:{ops_id}"),
        ("api_key.create", f"api_key/{ops2_id}", "config:admin-key"),
        ("api_key.revoke", f"api_key/{ops_id}", f"api_key:{ops2_id}"),
        ("integration.delete", "integration/scenario", f"api_key:{ops2_id}"),
    ]
    by_action = {e["action"]: e for e in entries}
    update = by_action["integration.update"]
    assert update["before"]["credentials"] == {"api_key": "env:WEATHER_KEY"}
    assert update["after"]["credentials"] == {"api_key": "env:WEATHER_KEY_V2"}
    assert update["tenant"] == "acme" and update["request_id"]
    assert by_action["integration.delete"]["after"] is None
    assert by_action["api_key.revoke"]["after"]["state"] == "revoked"
    filtered = await client.get("/audit", params={"action": "integration.update"}, headers=ADMIN)
    assert [e["action"] for e in (await filtered.json())["items"]] == ["integration.update"]
    tenant_view = await client.get("/audit", headers=bearer(new_key))
    assert {e["tenant"] for e in (await tenant_view.json())["items"]} == {"acme"}

    # -- nothing leaks anywhere ------------------------------------------------------------
    forbidden = {
        "weather secret": WEATHER_SECRET,
        "pasted secret": pasted["credentials"]["api_key"],
        "configured admin key": ADMIN_KEY,
        "admin key": admin_key,
        "second key": new_key,
        "jwt": token,
        "jwt signature": token.rsplit(".", 1)[1],
    }
    formatter = JsonFormatter()
    logs = [formatter.format(r) for r in caplog.records]
    raw_logs = [f"{r.getMessage()} {r.__dict__}" for r in caplog.records]
    with sqlite3.connect(tmp_path / "app0" / "data" / "registry.sqlite3") as conn:
        events = [row[0] for row in conn.execute("SELECT envelope FROM outbox")]  # sent too
    assert any("scenario" in e for e in events)
    stored_audit = [
        json.dumps([e.before, e.after, e.principal, e.target])
        for e in await client.app[STORE].list_audit(AuditQuery(limit=500))
    ]
    assert logs and events and stored_audit
    for label, value in forbidden.items():
        for where, texts in (
            ("response", seen),
            ("log line", logs),
            ("log record", raw_logs),
            ("event", events),
            ("audit entry", stored_audit),
        ):
            leaked = [t for t in texts if value in t]
            assert not leaked, f"{label} found in a {where}: {leaked[0][:300]}"
    assert admin_key in key_responses[0] and new_key in key_responses[1], "shown once"
