"""The status page's handlers over a real aiohttp server with authentication on (no Envoy):
the public shell holds no data, every fragment and the stream need the API's credentials
and role, other tenants' integrations are absent, hostile text is escaped, and the
security headers (CSP without inline script or other origins, nosniff, no framing, no
referrer) are on every ``/ui`` response."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from control_plane.api.ui.headers import CSP
from tests.integration.test_security.conftest import ADMIN, Secure, weather_doc

XSS = "<img src=x onerror=alert(1)>"


def _headers_ok(headers: Any) -> None:
    csp = headers["Content-Security-Policy"]
    assert csp == CSP
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "http" not in csp
    assert "frame-ancestors 'none'" in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"


async def test_shell_is_public_and_holds_no_data(secure: Secure) -> None:
    shell = await secure.client.get("/ui")
    assert shell.status == 200
    text = await shell.text()
    _headers_ok(shell.headers)
    assert "weather" not in text, "no integration in the public shell"
    assert 'data-auth="required"' in text
    assert "<script>" not in text and " on" + "load=" not in text, "no inline script"
    for src in re.findall(r'(?:src|href)="([^"#]+)"', text):
        assert src.startswith("/ui/static/"), src  # nothing from another origin
        asset = await secure.client.get(src)
        assert asset.status == 200, src
        _headers_ok(asset.headers)
    missing = await secure.client.get("/ui/static/../../settings.py")
    assert missing.status == 404


async def test_fragments_and_stream_need_credentials(secure: Secure) -> None:
    for path in ("/ui/fragments/overview", "/ui/fragments/integrations/weather", "/ui/stream"):
        response = await secure.client.get(path)
        assert response.status == 401, path
        assert response.headers["Content-Security-Policy"] == CSP
        bad = await secure.client.get(path, headers={"Authorization": "Bearer isk_nope_x"})
        assert bad.status == 401, path


async def test_overview_rows_by_tenant_and_escaped(secure: Secure) -> None:
    created = await secure.client.post(
        "/integrations",
        json=weather_doc("hostile", description=XSS),
        headers=ADMIN,
    )
    assert created.status == 201, await created.text()
    await secure.client.post(
        "/integrations", json=weather_doc("rival", tenant="globex"), headers=ADMIN
    )
    viewer = await secure.client.get("/ui/fragments/overview", headers=secure.as_("viewer"))
    assert viewer.status == 200
    _headers_ok(viewer.headers)
    assert viewer.headers["Cache-Control"] == "no-store"
    html = await viewer.text()
    ids = re.findall(r'<tr id="row-([a-z0-9-]+)"', html)
    assert set(ids) == {"weather", "hostile"}, "acme's only: globex's rival is absent"
    assert XSS not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    everything = await secure.client.get("/ui/fragments/overview", headers=ADMIN)
    assert "row-rival" in await everything.text()
    other = await secure.client.get(
        "/ui/fragments/integrations/weather", headers=secure.as_("other")
    )
    assert other.status == 404, "another tenant's integration does not exist"


async def test_detail_actions_follow_the_role(secure: Secure) -> None:
    detail = "/ui/fragments/integrations/weather"
    viewer = await (await secure.client.get(detail, headers=secure.as_("viewer"))).text()
    assert "button" not in viewer.split('class="actions"')[1].split("</div>")[0]
    assert "allows no operator action" in viewer
    operator = await (await secure.client.get(detail, headers=secure.as_("operator"))).text()
    assert 'data-path="/integrations/weather/circuit-breaker/reset"' in operator
    assert 'data-path="/integrations/weather/test"' in operator
    assert "cache/clear" not in operator, "no cache configured, no clear button"
    # The definition shows references, never values.
    assert "env:WEATHER_KEY" in operator
    from tests.integration.test_security.conftest import WEATHER_SECRET

    assert WEATHER_SECRET not in operator


async def test_stream_sends_visible_rows_and_changes(secure: Secure) -> None:
    response = await secure.client.get("/ui/stream", headers=secure.as_("viewer"))
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    _headers_ok(response.headers)

    async def next_rows() -> dict[str, Any]:
        lines: list[str] = []
        while True:
            line = (await response.content.readline()).decode().rstrip("\r\n")
            if line.startswith("data: "):
                lines.append(line[6:])
            elif not line and lines:
                return dict(json.loads("\n".join(lines)))

    first = await asyncio.wait_for(next_rows(), 10)
    assert [row["id"] for row in first["upsert"]] == ["weather"]
    await secure.client.post(
        "/integrations", json=weather_doc("second", description=XSS), headers=ADMIN
    )
    await secure.client.post(
        "/integrations", json=weather_doc("hidden", tenant="globex"), headers=ADMIN
    )
    later = await asyncio.wait_for(next_rows(), 10)
    assert [row["id"] for row in later["upsert"]] == ["second"], "globex's row never sent"
    assert XSS not in later["upsert"][0]["html"]
    response.close()


async def test_a_jwt_signs_in_like_an_api_key(secure: Secure) -> None:
    token = secure.issuer.token(role="viewer", tenant="acme")
    bearer = {"Authorization": f"Bearer {token}"}
    overview = await secure.client.get("/ui/fragments/overview", headers=bearer)
    assert overview.status == 200, await overview.text()
    html = await overview.text()
    assert "row-weather" in html and token not in html, "the token never reaches the HTML"
    detail = await secure.client.get("/ui/fragments/integrations/weather", headers=bearer)
    assert "allows no operator action" in await detail.text()
    globex = secure.issuer.token(role="admin", tenant="globex")
    other = await secure.client.get(
        "/ui/fragments/overview", headers={"Authorization": f"Bearer {globex}"}
    )
    assert "row-weather" not in await other.text()
