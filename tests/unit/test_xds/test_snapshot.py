"""Snapshots: content-hash versions and the consistency check before serving."""

from __future__ import annotations

import random
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.filters.http.credential_injector.v3 import credential_injector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.http.injected_credentials.generic.v3 import generic_pb2
from envoy.extensions.http.injected_credentials.oauth2.v3 import oauth2_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2

from control_plane.xds.resources import (
    ADS_ORDER,
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ROUTE,
    SECRET,
    references,
)
from control_plane.xds.snapshot import InconsistentSnapshot, Snapshot, content_version
from tests.support.xds import (
    assignment,
    complete,
    eds_cluster,
    rds_listener,
    route_table,
    sds,
    secret,
    typed,
)


def test_ads_order_is_cds_eds_lds_rds_sds() -> None:
    assert ADS_ORDER == (CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET)
    assert ENDPOINT.endswith("envoy.config.endpoint.v3.ClusterLoadAssignment")
    assert ROUTE.endswith("envoy.config.route.v3.RouteConfiguration")


def test_versions_are_content_hashes_independent_of_insertion_order() -> None:
    first = Snapshot.build(complete())
    reordered = {t: dict(reversed(list(r.items()))) for t, r in reversed(complete().items())}
    second = Snapshot.build(reordered)
    assert first.version == second.version
    assert first.versions == second.versions
    cluster = complete()[CLUSTER]["stripe"]
    assert first.resource_version(CLUSTER, "stripe") == content_version(cluster)
    assert len(first.version) == 64


def test_changing_one_resource_changes_its_version_and_the_snapshot_version_only() -> None:
    before = Snapshot.build(complete())
    resources = complete()
    resources[ENDPOINT]["stripe"] = assignment("stripe", port=9090)
    after = Snapshot.build(resources)
    assert after.version != before.version
    assert after.resource_version(ENDPOINT, "stripe") != before.resource_version(ENDPOINT, "stripe")
    for type_url in (CLUSTER, LISTENER, ROUTE, SECRET):
        assert after.versions[type_url] == before.versions[type_url]
        assert after.version_for(type_url) == before.version_for(type_url)
    assert after.version_for(ENDPOINT) != before.version_for(ENDPOINT)


def test_map_fields_hash_deterministically() -> None:
    def with_metadata(keys: list[str]) -> Any:
        cluster = cluster_pb2.Cluster(name="c")
        fields = cluster.metadata.filter_metadata["integration"].fields
        for key in keys:
            fields[key].string_value = key
        return cluster

    assert content_version(with_metadata(["a", "b", "c"])) == content_version(
        with_metadata(["c", "b", "a"])
    )


def test_version_for_names_covers_only_those_resources() -> None:
    resources = complete()
    resources[ENDPOINT]["other"] = assignment("other")
    snapshot = Snapshot.build(resources)
    changed = complete()
    changed[ENDPOINT]["other"] = assignment("other", port=1)
    other = Snapshot.build(changed)
    assert snapshot.version_for(ENDPOINT, ["stripe"]) == other.version_for(ENDPOINT, ["stripe"])
    assert snapshot.version_for(ENDPOINT) != other.version_for(ENDPOINT)


def test_snapshot_copies_messages() -> None:
    resources = complete()
    snapshot = Snapshot.build(resources)
    resources[CLUSTER]["stripe"].connect_timeout.seconds = 99
    assert snapshot.get(CLUSTER)["stripe"].connect_timeout.seconds == 0
    assert snapshot.resource_version(CLUSTER, "stripe") == content_version(
        complete()[CLUSTER]["stripe"]
    )


def test_missing_references_are_all_named() -> None:
    resources = complete()
    del resources[ENDPOINT]["stripe"]
    del resources[ROUTE]["stripe-routes"]
    del resources[SECRET]["stripe-cert"]
    snapshot = Snapshot.unchecked(resources)
    assert not snapshot.consistent()
    with pytest.raises(InconsistentSnapshot) as raised:
        Snapshot.build(resources)
    error = raised.value
    assert error.missing == {
        ENDPOINT: frozenset({"stripe"}),
        ROUTE: frozenset({"stripe-routes"}),
        SECRET: frozenset({"stripe-cert"}),
    }
    text = str(error)
    assert "endpoints ['stripe']" in text
    assert "routes ['stripe-routes']" in text
    assert "secrets ['stripe-cert']" in text


def test_eds_service_name_is_the_reference() -> None:
    resources = complete()
    resources[CLUSTER]["stripe"] = eds_cluster("stripe", service_name="stripe-eds")
    with pytest.raises(InconsistentSnapshot, match="stripe-eds"):
        Snapshot.build(resources)
    resources[ENDPOINT] = {"stripe-eds": assignment("stripe-eds")}
    assert Snapshot.build(resources).consistent()


def test_static_cluster_and_inline_routes_need_nothing() -> None:
    cluster = cluster_pb2.Cluster(name="static", type=cluster_pb2.Cluster.STATIC)
    cluster.load_assignment.CopyFrom(assignment("static"))
    snapshot = Snapshot.build({CLUSTER: {"static": cluster}})
    assert snapshot.consistent()
    assert snapshot.get(LISTENER) == {}


def test_downstream_tls_and_credential_injector_secrets_are_references() -> None:
    generic = generic_pb2.Generic(credential=sds("stripe-key"))
    oauth = oauth2_pb2.OAuth2(scopes=["read"])
    oauth.token_endpoint.uri = "https://auth.example.com/oauth/token"
    oauth.client_credentials.client_id = "m2m"
    oauth.client_credentials.client_secret.CopyFrom(sds("auth0-client-secret"))
    injectors = []
    for name, credential in (("generic", generic), ("oauth2", oauth)):
        injector = credential_injector_pb2.CredentialInjector(
            credential=typed(f"envoy.http.injected_credentials.{name}", credential)
        )
        injectors.append(
            hcm_pb2.HttpFilter(
                name="envoy.filters.http.credential_injector",
                typed_config=typed("x", injector).typed_config,
            )
        )
    listener = rds_listener("stripe", "stripe-routes", injectors)
    downstream = tls_pb2.DownstreamTlsContext()
    downstream.common_tls_context.validation_context_sds_secret_config.CopyFrom(sds("ca"))
    chain = listener.filter_chains[0]
    chain.transport_socket.name = "envoy.transport_sockets.tls"
    chain.transport_socket.typed_config.Pack(downstream)
    # A secret without an SDS config comes from the bootstrap, not from this snapshot.
    chain.filters.add(name="other").typed_config.Pack(secret_pb2.SdsSecretConfig(name="static"))

    found = references({LISTENER: {"stripe": listener}})
    assert found.secrets == {"stripe-key", "auth0-client-secret", "ca"}
    assert found.routes == {"stripe-routes"}
    assert found.endpoints == frozenset()


def test_unknown_any_types_are_tolerated() -> None:
    cluster = eds_cluster("c")
    cluster.typed_extension_protocol_options["x"].type_url = "type.googleapis.com/no.Such"
    cluster.typed_extension_protocol_options["x"].value = b"\x00garbage"
    assert references({CLUSTER: {"c": cluster}}).endpoints == {"c"}


def test_build_rejects_misfiled_resources() -> None:
    with pytest.raises(ValueError, match="named 'stripe'"):
        Snapshot.build({CLUSTER: {"wrong": eds_cluster("stripe")}})
    with pytest.raises(ValueError, match="under"):
        Snapshot.build({LISTENER: {"stripe": eds_cluster("stripe")}})
    with pytest.raises(ValueError, match="unsupported"):
        Snapshot.build({"type.googleapis.com/x.Y": {}})


def test_empty_snapshot_is_consistent_and_stable() -> None:
    assert Snapshot.build({}).version == Snapshot.build({}).version
    assert Snapshot.build({}).consistent()


def _group(n: str, port: int = 8080) -> dict[str, dict[str, Any]]:
    """One referencing set (EDS cluster, endpoints, listener, route table, secret) named ``n``."""
    return {
        CLUSTER: {n: eds_cluster(n, tls_sds=f"{n}-cert")},
        ENDPOINT: {n: assignment(n, port=port)},
        LISTENER: {n: rds_listener(n, f"{n}-routes")},
        ROUTE: {f"{n}-routes": route_table(f"{n}-routes", n)},
        SECRET: {f"{n}-cert": secret(f"{n}-cert")},
    }


def test_incremental_build_reuses_the_previous_copies() -> None:
    first = Snapshot.build(complete())
    resources = {t: dict(first.get(t)) for t in ADS_ORDER}  # the snapshot's own copies
    changed = assignment("stripe", port=9090)
    resources[ENDPOINT]["stripe"] = changed
    second = Snapshot.build(resources, previous=first)
    assert second == Snapshot.build(resources)
    assert second.get(CLUSTER)["stripe"] is first.get(CLUSTER)["stripe"]
    assert second.get(ENDPOINT)["stripe"] is not changed  # a new message is still copied
    changed.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value = 1
    assert second.resource_version(ENDPOINT, "stripe") == content_version(
        assignment("stripe", port=9090)
    )
    # An equal message that is not the previous copy is copied and hashed like a new one.
    third = Snapshot.build(complete(), previous=first)
    assert third == first
    assert third.get(CLUSTER)["stripe"] is not first.get(CLUSTER)["stripe"]


def test_incremental_build_still_checks_references() -> None:
    first = Snapshot.build(complete())
    resources = {t: dict(first.get(t)) for t in ADS_ORDER}
    del resources[ROUTE]["stripe-routes"]  # the reused listener still names it
    with pytest.raises(InconsistentSnapshot, match="stripe-routes"):
        Snapshot.build(resources, previous=first)


@pytest.mark.parametrize("seed", range(5))
def test_incremental_equals_from_scratch_for_random_changes(seed: int) -> None:
    rng = random.Random(seed)
    ports = {f"s{i}": 8080 for i in range(6)}

    def fresh() -> dict[str, dict[str, Any]]:
        merged: dict[str, dict[str, Any]] = {t: {} for t in ADS_ORDER}
        for n, port in ports.items():
            for t, by_name in _group(n, port).items():
                merged[t].update(by_name)
        return merged

    previous = Snapshot.build(fresh())
    for step in range(30):
        change = rng.choice(["port", "drop", "add", "none"])
        name = rng.choice(sorted(ports))
        if change == "port":
            ports[name] = rng.choice([8080, 8081, 8082])
        elif change == "drop" and len(ports) > 1:
            del ports[name]
        elif change == "add":
            ports[f"s{step + 10}"] = 8080
        wanted = fresh()
        # Hand back the previous copy wherever the resource did not change, as the pipeline does.
        resources = {
            t: {
                name: previous.get(t)[name]
                if name in previous.get(t) and previous.get(t)[name] == message
                else message
                for name, message in by_name.items()
            }
            for t, by_name in wanted.items()
        }
        incremental = Snapshot.build(resources, previous=previous)
        scratch = Snapshot.build(wanted)
        assert incremental == scratch
        assert incremental.version == scratch.version
        assert incremental.references() == scratch.references()
        previous = incremental
