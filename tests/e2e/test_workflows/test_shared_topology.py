"""The shared topology with real Envoys: two control-plane replicas (one PostgreSQL, one
Redis) serving three application-pod Envoys of two workloads over xDS with mTLS.

Each Envoy holds exactly its workload's listeners, clusters and secrets; Envoys without a
valid client certificate get nothing and are counted; SIGKILL of the replica an Envoy is
connected to costs no request and no re-push; a change through one replica reaches the
Envoys of the other.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from control_plane.sidecar.bootstrap import shared_bootstrap
from control_plane.sidecar.supervisor import EnvoySupervisor
from tests.e2e.faults.load import SteadyLoad
from tests.support.envoy import _section, dynamic_clusters, dynamic_listeners, running_envoy
from tests.support.fleet import ClientCert, FleetPki, write_workloads
from tests.support.ports import free_port
from tests.support.service import ServiceProcess
from tests.support.upstream import running_upstream
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.envoy, pytest.mark.postgres, pytest.mark.redis]

SHOP = "spiffe://e2e.local/ns/acme/sa/shop"
LEDGER = "spiffe://e2e.local/ns/globex/sa/ledger"
SECRETS = {"E2E_KEY": "acme-secret-value-0001", "E2E_STRIPE_KEY": "globex-secret-value-0002"}


def _registry(upstream_url: str, ports: dict[str, int]) -> str:
    return (
        "integrations:\n"
        f"  - id: orders\n    kind: http\n    tenant: acme\n    upstream: {upstream_url}\n"
        f"    listen_port: {ports['orders']}\n"
        "    credentials: {api_key: env:E2E_KEY}\n"
        f"  - id: payouts\n    kind: http\n    tenant: globex\n    upstream: {upstream_url}\n"
        f"    listen_port: {ports['payouts']}\n"
        "    credentials: {api_key: env:E2E_STRIPE_KEY}\n"
    )


@asynccontextmanager
async def _envoy(
    root: Path,
    name: str,
    pki: FleetPki,
    cert: ClientCert | None,
    replicas: list[ServiceProcess],
) -> AsyncIterator[EnvoySupervisor]:
    """An application pod's Envoy: the rendered shared bootstrap, ``cert`` as its
    identity (None: a certificate-less Envoy, its TLS context without one)."""
    tls = root / f"{name}-tls"
    tls.mkdir(parents=True)
    shutil.copy(pki.ca_file, tls / "ca.crt")
    if cert is not None:
        shutil.copy(cert.cert, tls / "tls.crt")
        shutil.copy(cert.key, tls / "tls.key")
    files = shared_bootstrap(
        node_id=f"{name}-pod",
        node_cluster="e2e",
        xds_addresses=[("127.0.0.1", r.xds_port) for r in replicas],
        tls_dir=tls,
        sds_dir=tls,
        server_name="localhost",
        admin_port=0,
    )
    for file_name, text in files.items():
        if file_name != "bootstrap.yaml":
            (tls / file_name).write_text(text)
    bootstrap = files["bootstrap.yaml"]
    if cert is None:
        doc = yaml.safe_load(bootstrap)
        xds = next(c for c in doc["static_resources"]["clusters"] if c["name"] == "xds_cluster")
        tls_context = xds["transport_socket"]["typed_config"]
        del tls_context["common_tls_context"]["tls_certificate_sds_secret_configs"]
        bootstrap = yaml.safe_dump(doc)
    async with running_envoy(root / name, bootstrap=bootstrap) as envoy:
        yield envoy


async def _dump(envoy: EnvoySupervisor) -> dict[str, Any]:
    async with envoy.admin() as admin:
        dump: dict[str, Any] = await admin.config_dump()
        return dump


# The pod's own file-based SDS secrets (its xDS client certificate and CA), not served.
LOCAL_SECRETS = {"xds_client_cert", "xds_trusted_ca"}


def _secrets(dump: dict[str, Any]) -> set[str]:
    """The secrets the control plane served (Envoy redacts their values in the dump)."""
    section = _section(dump, "SecretsConfigDump")
    names = {s["name"] for s in section.get("dynamic_active_secrets", [])}
    return names - LOCAL_SECRETS


async def _status(session: aiohttp.ClientSession, service: ServiceProcess, ident: str) -> Any:
    async with session.get(f"{service.base_url}/integrations/{ident}/status") as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def _connected_replica(
    session: aiohttp.ClientSession, replicas: list[ServiceProcess], ident: str, node: str
) -> ServiceProcess | None:
    for replica in replicas:
        if replica.process is None or replica.process.poll() is not None:
            continue
        body = await _status(session, replica, ident)
        for entry in body["fleet"]["nodes"]:
            if entry["node_id"] == node and entry["connected"] and entry["state"] == "acked":
                return replica
    return None


async def test_shared_topology_with_real_envoys(
    tmp_path: Path, postgres_database: str, redis_url: str
) -> None:
    pki = FleetPki(tmp_path / "pki")
    workloads = write_workloads(
        tmp_path / "workloads.yaml", {"shop": ("acme", [SHOP]), "ledger": ("globex", [LEDGER])}
    )
    ports = {"orders": free_port(), "payouts": free_port()}
    env = {
        "POSTGRESQL_URL": postgres_database,
        "REDIS_URL": redis_url,
        **pki.settings_env(),
        "INTEGRATION_SERVICE_WORKLOADS_FILE": str(workloads),
        **SECRETS,
    }
    async with running_upstream() as upstream, AsyncExitStack() as stack:
        replicas = []
        for name in ("a", "b"):
            service = ServiceProcess(
                tmp_path / f"cp-{name}",
                _registry(upstream.url, ports),
                env={**env, "INTEGRATION_SERVICE_PROBE_XDS_PORT": str(free_port())},
            )
            service.start()
            stack.callback(service.stop)
            replicas.append(service)
        for service in replicas:
            await service.wait_ready()
        a, b = replicas
        shop_cert = pki.client("shop", uri=SHOP)
        shop1 = await stack.enter_async_context(_envoy(tmp_path, "shop1", pki, shop_cert, replicas))
        # The second shop pod claims to be the ledger pod: its certificate decides.
        shop2 = await stack.enter_async_context(
            _envoy(tmp_path, "ledger", pki, shop_cert, replicas)
        )
        # The ledger pod talks to replica B only, so a change through A must cross over.
        ledger = await stack.enter_async_context(
            _envoy(tmp_path / "l", "ledger", pki, pki.client("ledger", uri=LEDGER), [b])
        )
        bare = await stack.enter_async_context(_envoy(tmp_path, "bare", pki, None, replicas))
        foreign = await stack.enter_async_context(
            _envoy(tmp_path, "foreign", pki, pki.foreign_client("foreign", SHOP), replicas)
        )
        session = await stack.enter_async_context(
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        )

        # 1. Each Envoy holds exactly its workload's resources and secrets.
        async def holds(envoy: EnvoySupervisor, ident: str) -> bool:
            dump = await _dump(envoy)
            return ident in dynamic_clusters(dump) and ident in dynamic_listeners(dump)

        for envoy, ident in ((shop1, "orders"), (shop2, "orders"), (ledger, "payouts")):
            await wait_until(partial(holds, envoy, ident), deadline_s=30, message=ident)
        for envoy in (shop1, shop2):
            dump = await _dump(envoy)
            assert set(dynamic_clusters(dump)) == {"orders"}
            assert set(dynamic_listeners(dump)) == {"orders"}
            assert _secrets(dump) and all(s.startswith("orders") for s in _secrets(dump))
            assert SECRETS["E2E_STRIPE_KEY"] not in str(dump)
        dump = await _dump(ledger)
        assert set(dynamic_clusters(dump)) == {"payouts"}
        assert _secrets(dump) and all(s.startswith("payouts") for s in _secrets(dump))
        assert SECRETS["E2E_KEY"] not in str(dump)

        # 2. No certificate, or one from another CA: nothing, and counted and logged.
        async def refused() -> bool:
            seen = set()
            for replica in replicas:
                async with session.get(f"{replica.base_url}/metrics") as response:
                    text = await response.text()
                for reason in ("no_certificate", "bad_certificate"):
                    if f'xds_connections_refused_total{{reason="{reason}"}}' in text:
                        seen.add(reason)
            return seen == {"no_certificate", "bad_certificate"}

        await wait_until(refused, deadline_s=20, message="refusals counted")
        for envoy in (bare, foreign):
            dump = await _dump(envoy)
            assert not dynamic_clusters(dump) and not dynamic_listeners(dump) and not _secrets(dump)
        assert any("xDS connection refused" in r.log() for r in replicas)

        # 3. SIGKILL of shop1's replica under 200 req/s through shop1: no failed request,
        # shop1 reconnects to the other replica, and runs the very same versions.
        connected = await _connected_replica(session, replicas, "orders", "shop1-pod")
        assert connected is not None
        survivor = b if connected is a else a
        before = dynamic_clusters(await _dump(shop1))["orders"]
        async with SteadyLoad(
            f"http://127.0.0.1:{ports['orders']}/steady", count=1000, interval_s=0.005
        ) as load:
            await wait_until(lambda: load.result.sent >= 100, message="load running")
            connected.kill()

            async def moved() -> bool:
                found = await _connected_replica(session, [survivor], "orders", "shop1-pod")
                return found is not None

            await wait_until(
                moved,
                deadline_s=30,
                message="shop1 reconnected to the other replica",
            )
            result = await load.wait()
        assert result.sent == 1000
        assert result.failed == 0, result.errors[:5]
        after = dynamic_clusters(await _dump(shop1))["orders"]
        assert after["version_info"] == before["version_info"]
        assert after["last_updated"] == before["last_updated"], "no re-push after reconnect"

        # 4. The killed replica back (same store): a registration through A reaches the
        # ledger Envoy, which only talks to B.
        connected.start()
        await connected.wait_ready()
        await wait_until(lambda: holds(ledger, "payouts"), deadline_s=30, message="ledger on B")
        document = {
            "id": "refunds",
            "kind": "http",
            "tenant": "globex",
            "upstream": upstream.url,
            "listen_port": free_port(),
        }
        async with session.post(f"{a.base_url}/integrations", json=document) as created:
            assert created.status == 201, await created.text()
        await wait_until(lambda: holds(ledger, "refunds"), deadline_s=15, message="A -> B")
        assert "refunds" not in dynamic_clusters(await _dump(shop1))
        status = await _status(session, b, "refunds")
        assert [n["node_id"] for n in status["fleet"]["nodes"] if n["connected"]] == ["ledger-pod"]
        await asyncio.sleep(0)


async def test_probes_run_through_the_control_planes_own_envoy(tmp_path: Path) -> None:
    """A replica started with its Envoy (``run`` without ``--no-envoy``) keeps that Envoy
    as its probe node, on loopback: it runs every integration, so probes and the Envoy-
    backed API work as in a pod while application pods get only their workload's part."""
    pki = FleetPki(tmp_path / "pki")
    workloads = write_workloads(tmp_path / "workloads.yaml", {"shop": ("acme", [SHOP])})
    ports = {"orders": free_port(), "payouts": free_port()}
    async with running_upstream() as upstream:
        service = ServiceProcess(
            tmp_path / "cp",
            _registry(upstream.url, ports),
            embedded=True,
            env={
                **pki.settings_env(),
                "INTEGRATION_SERVICE_WORKLOADS_FILE": str(workloads),
                "INTEGRATION_SERVICE_PROBE_XDS_PORT": str(free_port()),
                **SECRETS,
            },
        )
        service.start()
        try:
            await service.wait_ready()
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:

                async def probed(ident: str) -> dict[str, Any]:
                    url = f"{service.base_url}/integrations/{ident}/test"
                    async with session.post(url) as response:
                        body: dict[str, Any] = await response.json()
                        return body

                async def both_ok() -> bool:
                    results = [await probed(i) for i in ("orders", "payouts")]
                    return all(r.get("ok") for r in results)

                await wait_until(both_ok, deadline_s=30, message="probes through the probe Envoy")
                assert len(upstream.requests) >= 2
                status = await _status(session, service, "orders")
                assert status["fleet"]["workloads"] == ["shop"]
                assert status["fleet"]["nodes"] == []  # the probe node is no workload's
        finally:
            service.stop()
