"""Vetted resolution keeps TLS on the name, with a real Envoy: the control plane resolves
the upstream's name (loopback DNS server) and Envoy connects to the vetted address, yet it
still sends the name as SNI and verifies the upstream certificate against it — a
certificate for another name fails, even at an accepted address."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.support.fake_dns import FakeDns, running_dns
from tests.support.ports import free_port
from tests.support.stack import running_stack
from tests.support.tls_upstream import running_tls_upstream
from tests.support.waiting import wait_until

pytestmark = pytest.mark.envoy

NAME = "api.vetted-tls.test"
WRONG = "other.vetted-tls.test"


@pytest.fixture
def dns() -> Iterator[FakeDns]:
    with running_dns() as server:
        yield server


async def test_sni_and_certificate_check_use_the_name(tmp_path: Path, dns: FakeDns) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    dns.set(NAME, ["127.0.0.1"], ttl=60)
    dns.set(WRONG, ["127.0.0.1"], ttl=60)
    grants = json.dumps(
        {"grants": [{"ref": f"file:{ca_file}", "tenants": ["*"], "hosts": [NAME, WRONG]}]}
    )
    env = {
        "INTEGRATION_SERVICE_DNS_SERVERS": dns.server,
        "INTEGRATION_SERVICE_UPSTREAM_ALLOWLIST": "127.0.0.1/32",
    }
    ports = {"good": free_port(), "bad": free_port()}
    async with (
        running_tls_upstream(ca, NAME) as upstream,
        running_stack(tmp_path, "integrations: []\n", env=env, grants=grants) as s,
    ):
        for ident, name in (("good", NAME), ("bad", WRONG)):
            doc = {
                "id": ident,
                "kind": "http",
                "upstream": {
                    "url": f"https://{name}:{upstream.port}",
                    "tls": {"ca_bundle": f"file:{ca_file}"},
                },
                "listen_port": ports[ident],
            }
            async with s.session.post(s.api("/integrations"), json=doc) as response:
                assert response.status == 201, await response.text()

        async def served() -> bool:
            async with s.session.get(f"http://127.0.0.1:{ports['good']}/hello") as response:
                return response.status == 200

        await wait_until(served, deadline_s=20, message="vetted TLS upstream reached")
        status = await s.get_json(s.api("/integrations/good/status"))
        assert status["resolution"]["addresses"] == ["127.0.0.1"], status["resolution"]
        dump = json.dumps(await s.config_dump())
        assert '"sni": "api.vetted-tls.test"' in dump

        # The same address under a name its certificate does not carry: refused by Envoy.
        async with s.session.get(f"http://127.0.0.1:{ports['bad']}/hello") as response:
            assert response.status == 503
        stats = await s.stats()
        assert stats.get("cluster.bad.ssl.fail_verify_san", 0) >= 1
        assert upstream.client_subjects, "the good integration's requests arrived over TLS"
