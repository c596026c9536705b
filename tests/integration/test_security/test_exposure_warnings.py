"""The service says so when it is configured to be reachable beyond loopback."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from control_plane.app import create_app
from tests.support.app import app_settings


@pytest.mark.parametrize(("xds_host", "warned"), [("0.0.0.0", True), ("127.0.0.1", False)])
async def test_non_loopback_xds_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, xds_host: str, warned: bool
) -> None:
    settings = app_settings(tmp_path, auth="disabled", xds_host=xds_host)
    caplog.set_level(logging.WARNING)
    async with TestClient(TestServer(create_app(settings, environ={}))):
        pass
    messages = [r.getMessage() for r in caplog.records]
    assert any("non-loopback" in m for m in messages) is warned
    assert any("AUTHENTICATION IS DISABLED" in m for m in messages)
