"""Headless Chromium (Debian's ``chromium`` package) driven by Playwright, for the status
page's browser tests and its benchmark.

Playwright's own browser downloads are not used: ``executable_path`` points at the
system's Chromium, which ``make test`` installs (``scripts/system-deps``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from playwright.async_api import Browser, ConsoleMessage, Dialog, Page, async_playwright

__all__ = ["CHROMIUM", "PageErrors", "chromium", "watch_errors"]

CHROMIUM = os.environ.get("INTEGRATION_SERVICE_CHROMIUM", "/usr/bin/chromium")


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    if not shutil.which(CHROMIUM):
        raise RuntimeError(
            f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium; "
            "make test does it through scripts/system-deps)"
        )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            # Two cores shared by everything: no GPU process, no sandbox helpers as root.
            args=["--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class PageErrors:
    """Console errors, uncaught exceptions and dialogs (an ``alert`` means script ran)."""

    console: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def all(self) -> list[str]:
        return self.console + self.exceptions + self.dialogs


def watch_errors(page: Page) -> PageErrors:
    errors = PageErrors()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.console.append(message.text)

    async def on_dialog(dialog: Dialog) -> None:
        errors.dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.exceptions.append(str(exc)))
    page.on("dialog", on_dialog)
    return errors
