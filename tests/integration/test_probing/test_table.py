"""``integration-service test`` against a real app with authentication on: a refused call
exits 2 with the problem's detail instead of printing an empty table."""

from __future__ import annotations

import pytest

from control_plane.probing.table import run_probe_table
from tests.integration.test_security.conftest import Secure


def _url(secure: Secure) -> str:
    return str(secure.client.server.make_url("")).rstrip("/")


async def test_no_token_exits_2_and_names_the_variable(
    secure: Secure, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await run_probe_table(_url(secure), [], {})
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""  # no empty table that would read as "no integrations"
    assert "refused GET /integrations: 401" in err
    assert "INTEGRATION_SERVICE_TOKEN" in err


async def test_invalid_token_exits_2(secure: Secure, capsys: pytest.CaptureFixture[str]) -> None:
    code = await run_probe_table(
        _url(secure), [], {"INTEGRATION_SERVICE_TOKEN": "isk_nope_" + "x" * 40}
    )
    _, err = capsys.readouterr()
    assert code == 2
    assert ": 401" in err and "INTEGRATION_SERVICE_TOKEN" in err


async def test_viewer_cannot_probe_exits_2_with_the_detail(
    secure: Secure, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = {"INTEGRATION_SERVICE_TOKEN": secure.keys["viewer"]}
    code = await run_probe_table(_url(secure), ["weather"], environ)
    out, err = capsys.readouterr()
    assert code == 2
    assert "refused POST /integrations/weather/test: 403" in err
    assert "operator" in err  # the problem's detail names the role it needs
    assert out == ""


async def test_unknown_id_is_a_failed_row_not_a_refusal(
    secure: Secure, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = {"INTEGRATION_SERVICE_TOKEN": secure.keys["operator"]}
    code = await run_probe_table(_url(secure), ["nope"], environ)
    out, err = capsys.readouterr()
    assert code == 1
    assert "nope" in out and "unknown integration" in out
    assert err == ""
