"""The status page in headless Chromium against the real service and a real Envoy.

Sign in with an API key; the overview lists the example integrations; a NACKed
integration comes first with Envoy's own text; a hostile description stays text; a
breaker tripped through the sidecar turns its row open without a reload; an operator's
reset works and a viewer has no button; a dropped stream shows "disconnected"; and no
console error, uncaught exception or dialog happens on the way.

``UI_SCREENSHOT_DIR=docs/img`` makes the first test save the README's screenshots.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.e2e.test_ui.ui_stack import EXAMPLE_IDS, XSS, UiStack, ui_stack
from tests.support.browser import chromium, watch_errors
from tests.support.waiting import wait_until

pytestmark = pytest.mark.envoy

LIVE_S = 5.0  # the bound: a tripped breaker shows as open within 5 s, no reload


async def _sign_in(page: Page, ui: UiStack, key: str) -> None:
    await page.goto(ui.url)
    await expect(page.locator("#signin")).to_be_visible()
    await page.fill("#token", key)
    await page.click("#signin button[type=submit]")
    await expect(page.locator("#overview")).to_be_visible()
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")


async def _nack(ui: UiStack, blocker: socket.socket) -> None:
    """Register an integration on a port another process holds: Envoy refuses it."""
    doc = {
        "id": "clash",
        "kind": "http",
        "upstream": ui.ok.url,
        "listen_port": blocker.getsockname()[1],
    }
    stack = ui.stack
    headers = stack.service.admin_headers
    async with stack.session.post(stack.api("/integrations"), json=doc, headers=headers) as r:
        assert r.status == 201, await r.text()

    async def nacked() -> bool:
        async with stack.session.get(
            stack.api("/integrations/clash/status"), headers=headers
        ) as response:
            return bool((await response.json())["config"]["state"] == "nacked")

    await wait_until(nacked, deadline_s=15, message="clash NACKed")


async def _probe(ui: UiStack, ident: str) -> bool:
    """``POST /integrations/{id}/test`` (the probe through the sidecar); whether it passed."""
    stack = ui.stack
    async with stack.session.post(
        stack.api(f"/integrations/{ident}/test"), headers=stack.service.admin_headers
    ) as response:
        assert response.status == 200, await response.text()
        return bool((await response.json())["ok"])


async def test_overview_nack_first_xss_text_tenants_and_detail(tmp_path: Path) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    try:
        async with ui_stack(tmp_path) as ui, chromium() as browser:
            await _nack(ui, blocker)
            # Health: a loopback integration passes its probe; Stripe's cannot be reached
            # from here (no outside network): twice (the unhealthy threshold) makes it
            # unhealthy, and its row names the failing step.
            assert await _probe(ui, "hostile") is True
            for _ in range(2):
                assert await _probe(ui, "stripe") is False
            viewer = await ui.new_key("viewer", "viewer")
            page = await browser.new_page(viewport={"width": 1500, "height": 900})
            errors = watch_errors(page)
            await _sign_in(page, ui, viewer)

            ids = await page.eval_on_selector_all("#rows tr", "rows => rows.map(r => r.dataset.id)")
            assert set(EXAMPLE_IDS) <= set(ids), "every example integration is listed"
            assert ids[0] == "clash", "the NACKed integration comes first"
            first = page.locator("#rows tr").first
            await expect(first).to_have_attribute("data-config", "nacked")
            nack = (await first.locator(".nack").text_content()) or ""
            assert "clash" in nack or "bind" in nack.lower() or "address" in nack.lower(), nack
            await expect(page.locator('#counts [data-count="config:nacked"]')).to_have_text(
                "nacked 1"
            )
            await expect(page.locator("#row-hostile")).to_have_attribute("data-health", "healthy")
            stripe = page.locator("#row-stripe")
            await expect(stripe).to_have_attribute("data-health", "unhealthy")
            assert "failed at" in (await stripe.locator(".step").text_content() or "")
            # The hostile description is text: no element, no script, no dialog.
            hostile = page.locator("#row-hostile")
            await expect(hostile.locator(".desc")).to_have_text(XSS)
            assert await hostile.locator("img").count() == 0
            # Columns that cannot be filled yet say why instead of showing numbers.
            token_cell = hostile.locator("td").nth(10).locator("span")
            assert "does not exist yet" in (await token_cell.get_attribute("title") or "")

            # The filter box narrows the rows.
            await page.fill("#filter", "stripe")
            await expect(page.locator("#rows tr:not([hidden])")).to_have_count(1)
            await page.fill("#filter", "")
            shots = os.environ.get("UI_SCREENSHOT_DIR")
            if shots:
                await page.screenshot(path=str(Path(shots) / "ui-overview.png"))

            # Detail: the definition shows references, never values; a viewer has no button.
            await page.click("#row-stripe a")
            await expect(page.locator("#detail")).to_be_visible()
            definition = await page.locator("#detail pre.json").first.text_content() or ""
            assert "env:STRIPE_SECRET_KEY" in definition
            assert "ui-e2e-" not in (await page.content()), "no credential value on the page"
            assert await page.locator("button.action").count() == 0

            # A tenant-scoped viewer does not see other tenants' integrations at all.
            billing = await ui.new_key("billing", "viewer", tenant="billing")
            other = await browser.new_page()
            other_errors = watch_errors(other)
            await _sign_in(other, ui, billing)
            scoped = await other.eval_on_selector_all(
                "#rows tr", "rows => rows.map(r => r.dataset.id)"
            )
            assert scoped == ["stripe"], scoped
            assert errors.all() == [] and other_errors.all() == []
    finally:
        blocker.close()


async def test_breaker_opens_live_operator_resets_viewer_cannot(tmp_path: Path) -> None:
    async with ui_stack(tmp_path) as ui, chromium() as browser:
        operator = await ui.new_key("operator", "operator")
        viewer = await ui.new_key("viewer", "viewer")
        page = await browser.new_page(viewport={"width": 1500, "height": 900})
        errors = watch_errors(page)
        await _sign_in(page, ui, operator)
        row = page.locator("#row-flaky")
        await expect(row).to_have_attribute("data-breaker", "closed")

        # Rate limit: the example weather-api's bucket holds 20; 25 requests at once leave
        # 5 limited, and its row counts both over the last minute, live.
        codes = []
        for _ in range(25):
            async with ui.stack.session.get(ui.stack.sidecar("weather-api", "/")) as response:
                codes.append(response.status)
        assert codes.count(429) == 5, codes
        weather = page.locator("#row-weather-api")
        await expect(weather.locator(".rate")).to_have_text(
            "20 allowed · 5 limited", timeout=LIVE_S * 1000
        )
        # A marker in the page's window: a reload would lose it (hash routes keep it).
        await page.evaluate("() => { window.uiMarker = 42; }")

        ui.flaky.status = 503
        for _ in range(3):
            async with ui.stack.session.get(ui.stack.sidecar("flaky", "/")) as response:
                assert response.status == 503
        tripped = time.monotonic()
        await expect(row).to_have_attribute("data-breaker", "open", timeout=LIVE_S * 1000)
        opened_after = time.monotonic() - tripped
        assert opened_after <= LIVE_S
        assert await page.evaluate("() => window.uiMarker") == 42, "no reload"
        assert await page.locator("#rows tr").first.get_attribute("data-id") == "flaky"
        await expect(row.locator(".hosts")).to_have_text("1 of 1 host ejected")

        # The operator resets the breaker from the detail page and sees the API's answer.
        ui.flaky.status = 200
        await page.click("#row-flaky a")
        await expect(page.locator("#detail")).to_be_visible()
        await page.click('button.action[data-path$="/circuit-breaker/reset"]')
        await expect(page.locator("#answer")).to_have_attribute("data-status", "200")
        answer = await page.locator("#answer-body").text_content() or ""
        assert '"acked": true' in answer
        await expect(page.locator("#row-flaky")).to_have_attribute(
            "data-breaker", "closed", timeout=LIVE_S * 1000
        )
        if shots := os.environ.get("UI_SCREENSHOT_DIR"):
            await page.screenshot(path=str(Path(shots) / "ui-detail.png"), full_page=True)

        # A viewer on the same page has no button.
        viewing = await browser.new_page()
        viewer_errors = watch_errors(viewing)
        await _sign_in(viewing, ui, viewer)
        await viewing.click("#row-flaky a")
        await expect(viewing.locator("#detail")).to_be_visible()
        assert await viewing.locator("button.action").count() == 0
        await expect(viewing.locator("#detail .actions")).to_contain_text("allows no operator")
        assert errors.all() == [] and viewer_errors.all() == []

        # The control plane goes away: the page says so instead of showing stale data as live.
        ui.stack.service.kill()
        await expect(page.locator("#live")).to_have_attribute("data-state", "disconnected")
        await expect(page.locator("#banner")).to_be_visible()
        # ... and picks up again, without a reload, once it is back.
        ui.stack.service.start()
        await ui.stack.service.wait_ready()
        await expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=30_000)
        await expect(page.locator("#banner")).to_be_hidden()
        await expect(page.locator("#row-flaky")).to_have_attribute("data-breaker", "closed")
        assert await page.evaluate("() => window.uiMarker") == 42, "still no reload"
