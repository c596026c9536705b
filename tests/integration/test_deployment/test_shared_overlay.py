"""The shared-control-plane overlay (``manifests/overlays/shared``): it renders with
kubectl's built-in kustomize, every object passes ``kubernetes-validate --strict``, and the
objects agree with each other where security depends on it (who may reach xDS, which
certificate names what, where the TLS files are).

``kubernetes-validate`` has no schemas for CRDs: it warns "couldn't find schema" for
cert-manager's Certificate, Issuer and ClusterIssuer and for the Prometheus Operator's
PodMonitor. Those are validated here against strict JSON schemas of the fields we use,
written from cert-manager's ``cert-manager.io/v1`` API reference (and the PodMonitor
schema of test_manifests.py), with a negative control showing a misspelt field fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.integration.test_deployment.paths import MANIFESTS, ROOT
from tests.integration.test_deployment.test_manifests import (
    PODMONITOR_SCHEMA,
    _kustomize,
    _validate_cli,
)

SHARED = MANIFESTS / "overlays" / "shared"
CRD_KINDS = {"Certificate", "Issuer", "ClusterIssuer", "PodMonitor"}
CONTROL_PLANE = "integration-control-plane"
CONTROL_NS = "integration-system"
APP = "checkout"

Doc = dict[str, Any]


# -- rendering ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("kustomize-shared") / "shared.yaml"
    out.write_text(yaml.safe_dump_all(_kustomize(SHARED)))
    return out


@pytest.fixture(scope="module")
def docs(rendered_file: Path) -> list[Doc]:
    return list(yaml.safe_load_all(rendered_file.read_text()))


def _one(docs: list[Doc], kind: str, name: str, namespace: str | None = None) -> Doc:
    found = [
        d
        for d in docs
        if d["kind"] == kind
        and (d["metadata"]["name"] == name or d["metadata"]["name"].startswith(f"{name}-"))
        and (namespace is None or d["metadata"].get("namespace") == namespace)
    ]
    assert len(found) == 1, (kind, name, [d["metadata"]["name"] for d in found])
    return found[0]


def _pod(deployment: Doc) -> Doc:
    spec: Doc = deployment["spec"]["template"]["spec"]
    return spec


def _containers(deployment: Doc) -> dict[str, Doc]:
    return {c["name"]: c for c in _pod(deployment)["containers"]}


def _env(container: Doc) -> dict[str, Doc]:
    return {e["name"]: e for e in container.get("env", [])}


def _mount_of(deployment: Doc, container: Doc, path: str) -> tuple[Doc, Doc]:
    """The volume mount holding *path* in *container*, and its volume."""
    mounts = [
        m for m in container["volumeMounts"] if path.startswith(m["mountPath"].rstrip("/") + "/")
    ]
    assert len(mounts) == 1, (path, mounts)
    volumes = {v["name"]: v for v in _pod(deployment)["volumes"]}
    return mounts[0], volumes[mounts[0]["name"]]


def _control_plane(docs: list[Doc]) -> Doc:
    return _one(docs, "Deployment", CONTROL_PLANE, CONTROL_NS)


def _app(docs: list[Doc]) -> Doc:
    return _one(docs, "Deployment", APP, "shop")


def _bootstrap_files(docs: list[Doc]) -> dict[str, str]:
    data: dict[str, str] = _one(docs, "ConfigMap", "envoy-bootstrap", "shop")["data"]
    return data


def _selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A LabelSelector of matchLabels only (the overlay uses nothing else: checked)."""
    assert set(selector) <= {"matchLabels"}, selector
    return dict(selector.get("matchLabels", {})).items() <= dict(labels).items()


# -- schemas --------------------------------------------------------------------------------


def test_rendered_overlay_validates_strictly(rendered_file: Path, docs: list[Doc]) -> None:
    result = _validate_cli(rendered_file)
    assert result.returncode == 0, result.stdout + result.stderr
    passed = warned = 0
    for line in result.stdout.splitlines():
        if line.startswith("WARN"):
            assert any(f"kind {kind} " in line for kind in CRD_KINDS), line
            warned += 1
        else:
            assert line.startswith("INFO") and " passed " in line, line
            passed += 1
    # Every object was looked at: the built-in kinds passed, only the CRDs were skipped.
    assert passed == sum(1 for d in docs if d["kind"] not in CRD_KINDS)
    assert warned == sum(1 for d in docs if d["kind"] in CRD_KINDS)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"} <= kinds
    assert {"ConfigMap", "ServiceAccount", "Namespace"} <= kinds
    assert {"Certificate", "Issuer", "ClusterIssuer", "PodMonitor"} <= kinds
    assert not kinds & {"HorizontalPodAutoscaler"}, "the control plane is not CPU-scaled"


# Strict schemas of the cert-manager.io/v1 fields the overlay uses, from cert-manager's API
# reference (https://cert-manager.io/docs/reference/api-docs/). additionalProperties: false
# everywhere, so a misspelt or unknown field fails as kubernetes-validate --strict would.
_DURATION = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(h|m|s|ms))+$"}
_ISSUER_REF = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "kind": {"enum": ["Issuer", "ClusterIssuer"]},
        "group": {"const": "cert-manager.io"},
    },
}
_KEY_USAGES = [
    "signing", "digital signature", "content commitment", "key encipherment",
    "key agreement", "data encipherment", "cert sign", "crl sign", "encipher only",
    "decipher only", "any", "server auth", "client auth", "code signing", "email protection",
    "s/mime", "ipsec end system", "ipsec tunnel", "ipsec user", "timestamping",
    "ocsp signing", "microsoft sgc", "netscape sgc",
]  # fmt: skip
_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
CERTIFICATE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "cert-manager.io/v1"},
        "kind": {"const": "Certificate"},
        "metadata": {**_METADATA, "required": ["name", "namespace"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["secretName", "issuerRef"],
            # cert-manager refuses a Certificate that names no subject at all.
            "anyOf": [
                {"required": ["commonName"]},
                {"required": ["dnsNames"]},
                {"required": ["uris"]},
            ],
            "properties": {
                "secretName": {"type": "string", "minLength": 1},
                "issuerRef": _ISSUER_REF,
                "isCA": {"type": "boolean"},
                "commonName": {"type": "string", "maxLength": 64},
                "dnsNames": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                "uris": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "string", "pattern": r"^[a-z][a-z0-9+.-]*://\S+$"},
                },
                "duration": _DURATION,
                "renewBefore": _DURATION,
                "usages": {"type": "array", "items": {"enum": _KEY_USAGES}},
                "privateKey": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]},
                        "size": {"type": "integer"},
                        "encoding": {"enum": ["PKCS1", "PKCS8"]},
                        "rotationPolicy": {"enum": ["Never", "Always"]},
                    },
                },
            },
        },
    },
}
ISSUER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "cert-manager.io/v1"},
        "kind": {"enum": ["Issuer", "ClusterIssuer"]},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "additionalProperties": False,
            # Exactly one issuer type.
            "oneOf": [{"required": ["selfSigned"]}, {"required": ["ca"]}],
            "properties": {
                "selfSigned": {"type": "object", "additionalProperties": False},
                "ca": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["secretName"],
                    "properties": {"secretName": {"type": "string", "minLength": 1}},
                },
            },
        },
    },
}


def test_cert_manager_objects_match_their_crd_fields(docs: list[Doc]) -> None:
    certificates = [d for d in docs if d["kind"] == "Certificate"]
    issuers = [d for d in docs if d["kind"] in ("Issuer", "ClusterIssuer")]
    assert len(certificates) == 3 and len(issuers) == 2
    for cert in certificates:
        jsonschema.validate(cert, CERTIFICATE_SCHEMA)
    for issuer in issuers:
        jsonschema.validate(issuer, ISSUER_SCHEMA)
        # An Issuer is namespaced, a ClusterIssuer is not.
        assert ("namespace" in issuer["metadata"]) == (issuer["kind"] == "Issuer")


def test_cert_manager_schema_rejects_unknown_fields(docs: list[Doc]) -> None:
    """The negative control: the schemas above are strict, so their passes mean something."""
    cert = _one(docs, "Certificate", f"{CONTROL_PLANE}-xds-tls", CONTROL_NS)
    bad = {**cert, "spec": {**cert["spec"], "dnsName": cert["spec"]["dnsNames"]}}
    with pytest.raises(jsonschema.ValidationError, match="dnsName"):
        jsonschema.validate(bad, CERTIFICATE_SCHEMA)
    nameless = {**cert, "spec": {"secretName": "x", "issuerRef": {"name": "y"}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(nameless, CERTIFICATE_SCHEMA)


def test_podmonitors_match_their_crd_fields_and_pods(docs: list[Doc]) -> None:
    monitors = [d for d in docs if d["kind"] == "PodMonitor"]
    assert len(monitors) == 2
    for monitor in monitors:
        jsonschema.validate(monitor, PODMONITOR_SCHEMA)
        namespace = monitor["metadata"]["namespace"]
        (deployment,) = [
            d
            for d in docs
            if d["kind"] == "Deployment"
            and d["metadata"]["namespace"] == namespace
            and _selects(monitor["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
        ]
        ports = {p["name"] for c in _pod(deployment)["containers"] for p in c.get("ports", [])}
        assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} <= ports


# -- the trust chain ------------------------------------------------------------------------


def test_one_ca_issues_every_xds_certificate(docs: list[Doc]) -> None:
    """selfsigned Issuer -> CA Certificate -> CA ClusterIssuer -> serving and client certs."""
    selfsigned = _one(docs, "Issuer", "integration-xds-selfsigned")
    assert selfsigned["spec"] == {"selfSigned": {}}
    ca_cert = _one(docs, "Certificate", "integration-xds-ca")
    assert ca_cert["spec"]["isCA"] is True
    assert ca_cert["spec"]["issuerRef"]["kind"] == "Issuer"
    assert ca_cert["spec"]["issuerRef"]["name"] == selfsigned["metadata"]["name"]
    # An Issuer only serves Certificates of its own namespace.
    assert ca_cert["metadata"]["namespace"] == selfsigned["metadata"]["namespace"]
    # Renewing the CA keeps its key: certificates it signed stay valid against the new one.
    assert ca_cert["spec"]["privateKey"]["rotationPolicy"] == "Never"
    ca_issuer = _one(docs, "ClusterIssuer", "integration-xds-ca")
    # A ClusterIssuer reads its Secret from cert-manager's cluster resource namespace.
    assert ca_cert["metadata"]["namespace"] == "cert-manager"
    assert ca_issuer["spec"]["ca"]["secretName"] == ca_cert["spec"]["secretName"]
    leaves = [d for d in docs if d["kind"] == "Certificate" and d is not ca_cert]
    assert {d["metadata"]["namespace"] for d in leaves} == {CONTROL_NS, "shop"}
    for leaf in leaves:
        assert leaf["spec"]["issuerRef"] == {
            "group": "cert-manager.io",
            "kind": "ClusterIssuer",
            "name": ca_issuer["metadata"]["name"],
        }
        assert not leaf["spec"].get("isCA", False)


# -- the control plane ----------------------------------------------------------------------


def test_control_plane_runs_alone_without_envoy(docs: list[Doc]) -> None:
    deployment = _control_plane(docs)
    assert deployment["spec"]["replicas"] >= 2
    containers = _containers(deployment)
    assert list(containers) == ["integration-service"]
    assert not any("envoy" in c["image"] for c in containers.values())
    assert not _pod(deployment).get("initContainers")
    control = containers["integration-service"]
    assert control["command"] == ["integration-service", "run", "--no-envoy"]
    assert control["image"].startswith("ghcr.io/example/integration-service:")
    env = _env(control)
    assert env["INTEGRATION_SERVICE_TOPOLOGY"]["value"] == "shared"
    assert env["INTEGRATION_SERVICE_XDS_HOST"]["value"] == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in control["ports"]}
    assert ports == {"xds": 18000, "http-api": 8002}
    assert int(env["INTEGRATION_SERVICE_XDS_PORT"]["value"]) == ports["xds"]
    assert int(env["INTEGRATION_SERVICE_PORT"]["value"]) == ports["http-api"]
    assert control["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http-api"}
    assert control["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http-api"}
    # The store and bus DSNs carry passwords: from a Secret, never a literal value.
    for name in ("POSTGRESQL_URL", "REDIS_URL"):
        assert "value" not in env[name] and "secretKeyRef" in env[name]["valueFrom"], name


def test_control_plane_replicas_spread_over_nodes(docs: list[Doc]) -> None:
    deployment = _control_plane(docs)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    spread = {c["topologyKey"]: c for c in _pod(deployment)["topologySpreadConstraints"]}
    host = spread["kubernetes.io/hostname"]
    assert host["whenUnsatisfiable"] == "DoNotSchedule" and host["maxSkew"] == 1
    for constraint in spread.values():
        assert _selects(constraint["labelSelector"], labels)
    assert "topology.kubernetes.io/zone" in spread


def test_containers_are_locked_down_like_the_base(docs: list[Doc]) -> None:
    base = yaml.safe_load((MANIFESTS / "base" / "deployment.yaml").read_text())
    base_pod = base["spec"]["template"]["spec"]
    (base_sc,) = {yaml.safe_dump(c["securityContext"]) for c in base_pod["containers"]}
    for deployment in (_control_plane(docs), _app(docs)):
        pod = _pod(deployment)
        assert pod["securityContext"] == base_pod["securityContext"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["enableServiceLinks"] is False
        for container in pod["containers"]:
            assert yaml.safe_dump(container["securityContext"]) == base_sc, container["name"]
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert "memory" in container["resources"]["limits"]
    accounts = [d for d in docs if d["kind"] == "ServiceAccount"]
    assert accounts and all(a["automountServiceAccountToken"] is False for a in accounts)


def test_pdb_keeps_a_control_plane_replica(docs: list[Doc]) -> None:
    pdb = _one(docs, "PodDisruptionBudget", CONTROL_PLANE, CONTROL_NS)
    assert pdb["spec"]["minAvailable"] == 1
    assert _control_plane(docs)["spec"]["replicas"] > pdb["spec"]["minAvailable"]
    selected = [
        d["metadata"]["name"]
        for d in docs
        if d["kind"] == "Deployment"
        and d["metadata"]["namespace"] == pdb["metadata"]["namespace"]
        and _selects(pdb["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
    ]
    assert selected == [CONTROL_PLANE]


def test_service_exposes_xds_and_the_api(docs: list[Doc]) -> None:
    service = _one(docs, "Service", CONTROL_PLANE, CONTROL_NS)
    deployment = _control_plane(docs)
    assert _selects(
        {"matchLabels": service["spec"]["selector"]},
        deployment["spec"]["template"]["metadata"]["labels"],
    )
    control = _containers(deployment)["integration-service"]
    named = {p["name"]: p["containerPort"] for p in control["ports"]}
    ports = {p["port"]: p for p in service["spec"]["ports"]}
    assert set(ports) == {18000, 8002}
    assert ports[18000]["appProtocol"] == "grpc"
    assert named[ports[18000]["targetPort"]] == 18000
    assert named[ports[8002]["targetPort"]] == 8002
    assert service["spec"]["type"] == "ClusterIP"


def _ingress_rules(policy: Doc, port: int) -> list[Doc]:
    rules: list[Doc] = [
        r for r in policy["spec"].get("ingress", []) if any(p["port"] == port for p in r["ports"])
    ]
    return rules


def _peer_admits(
    peer: Doc, namespace_labels: Mapping[str, str], pod_labels: Mapping[str, str]
) -> bool:
    assert set(peer) <= {"namespaceSelector", "podSelector"}, peer
    return _selects(peer.get("namespaceSelector", {}), namespace_labels) and _selects(
        peer.get("podSelector", {}), pod_labels
    )


def test_networkpolicy_restricts_xds_and_the_api(docs: list[Doc]) -> None:
    policy = _one(docs, "NetworkPolicy", CONTROL_PLANE, CONTROL_NS)
    pod_labels = _control_plane(docs)["spec"]["template"]["metadata"]["labels"]
    assert _selects(policy["spec"]["podSelector"], pod_labels)
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    # No rule without peers (which would admit every source) and none without ports.
    for rule in policy["spec"]["ingress"]:
        assert rule.get("from") and rule.get("ports"), rule
    (xds,) = _ingress_rules(policy, 18000)
    assert [p["port"] for p in xds["ports"]] == [18000], "xDS has a rule of its own"
    for peer in xds["from"]:
        # Both selectors in one peer (AND), neither empty: labelled pods of labelled
        # namespaces only; no ipBlock.
        assert set(peer) == {"namespaceSelector", "podSelector"}, peer
        assert peer["namespaceSelector"]["matchLabels"] and peer["podSelector"]["matchLabels"]
    # The example workload is admitted; a monitoring pod and an unlabelled app pod are not.
    shop = _one(docs, "Namespace", "shop")["metadata"]["labels"]
    app_labels = _app(docs)["spec"]["template"]["metadata"]["labels"]
    assert any(_peer_admits(p, shop, app_labels) for p in xds["from"])
    monitoring = {"kubernetes.io/metadata.name": "monitoring"}
    assert not any(_peer_admits(p, monitoring, {"app": "prometheus"}) for p in xds["from"])
    unlabelled = {k: v for k, v in app_labels.items() if not k.startswith("integration-service/")}
    assert not any(_peer_admits(p, shop, unlabelled) for p in xds["from"])
    (api,) = _ingress_rules(policy, 8002)
    assert any(_peer_admits(p, monitoring, {"app": "prometheus"}) for p in api["from"])
    assert not any(_peer_admits(p, shop, app_labels) for p in api["from"])
    # Egress: DNS, PostgreSQL, Redis; nothing else.
    egress_ports = {p["port"] for r in policy["spec"]["egress"] for p in r["ports"]}
    assert egress_ports == {53, 5432, 6379}
    for rule in policy["spec"]["egress"]:
        assert rule.get("to"), rule


def test_app_networkpolicy_reaches_only_the_control_plane_in_cluster(docs: list[Doc]) -> None:
    policy = _one(docs, "NetworkPolicy", f"{APP}-integration-sidecar", "shop")
    app_labels = _app(docs)["spec"]["template"]["metadata"]["labels"]
    assert _selects(policy["spec"]["podSelector"], app_labels)
    control_labels = _control_plane(docs)["spec"]["template"]["metadata"]["labels"]
    control_ns = {"kubernetes.io/metadata.name": CONTROL_NS}
    (xds,) = [r for r in policy["spec"]["egress"] if any(p["port"] == 18000 for p in r["ports"])]
    assert [p["port"] for p in xds["ports"]] == [18000]
    (peer,) = xds["to"]
    assert _peer_admits(peer, control_ns, control_labels)
    assert not _peer_admits(peer, {"kubernetes.io/metadata.name": "shop"}, control_labels)


def test_xds_tls_files_are_the_serving_certificates_secret(docs: list[Doc]) -> None:
    deployment = _control_plane(docs)
    control = _containers(deployment)["integration-service"]
    env = _env(control)
    cert = _one(docs, "Certificate", f"{CONTROL_PLANE}-xds-tls", CONTROL_NS)
    # cert-manager writes tls.crt, tls.key and (CA issuer) ca.crt into the Secret.
    for name, key in (
        ("INTEGRATION_SERVICE_XDS_TLS_CERT", "tls.crt"),
        ("INTEGRATION_SERVICE_XDS_TLS_KEY", "tls.key"),
        ("INTEGRATION_SERVICE_XDS_CLIENT_CA", "ca.crt"),
    ):
        path = env[name]["value"]
        mount, volume = _mount_of(deployment, control, path)
        assert path == f"{mount['mountPath']}/{key}", name
        assert mount["readOnly"] is True
        assert volume["secret"]["secretName"] == cert["spec"]["secretName"], name
    # The workloads file and the registry come from the generated ConfigMaps.
    for name, configmap in (
        ("INTEGRATION_SERVICE_WORKLOADS_FILE", "integration-workloads"),
        ("INTEGRATION_SERVICE_INTEGRATIONS_FILE", "integration-control-plane-config"),
        ("INTEGRATION_SERVICE_RATE_LIMITS_FILE", "integration-control-plane-config"),
    ):
        path = env[name]["value"]
        mount, volume = _mount_of(deployment, control, path)
        key = path.removeprefix(mount["mountPath"].rstrip("/") + "/")
        sources = [s["configMap"]["name"] for s in volume["projected"]["sources"]]
        (source,) = [s for s in sources if s.startswith(f"{configmap}-")]
        assert key in _one(docs, "ConfigMap", source, CONTROL_NS)["data"], name


def test_settings_accept_the_deployment_environment(tmp_path: Path, docs: list[Doc]) -> None:
    """The control plane's own settings parser reads the Deployment's env as meant (an
    unknown INTEGRATION_SERVICE_* name would be ignored silently, so it is checked too)."""
    from control_plane.settings import ENV_NAMES, load_settings

    env = _env(_containers(_control_plane(docs))["integration-service"])
    unknown = {n for n in env if n.startswith("INTEGRATION_SERVICE_")} - set(ENV_NAMES.values())
    assert not unknown
    environ = {name: e["value"] for name, e in env.items() if "value" in e}
    environ["POSTGRESQL_URL"] = "postgresql://integration@db.example/integration"
    environ["REDIS_URL"] = "redis://redis.example:6379/0"
    settings = load_settings(environ, config_file=tmp_path / "absent.yaml")
    assert settings.topology == "shared"
    assert (settings.xds_host, settings.xds_port) == ("0.0.0.0", 18000)
    assert settings.xds_tls_cert == Path("/etc/integration-service/xds-tls/tls.crt")
    assert settings.xds_tls_key == Path("/etc/integration-service/xds-tls/tls.key")
    assert settings.xds_client_ca == Path("/etc/integration-service/xds-tls/ca.crt")
    assert settings.workloads_file == Path("/etc/integration-service/config/workloads.yaml")


# -- the application pod --------------------------------------------------------------------


def _xds_cluster(bootstrap: Doc) -> Doc:
    clusters: list[Doc] = bootstrap["static_resources"]["clusters"]
    (cluster,) = [c for c in clusters if c["name"] == "xds_cluster"]
    return cluster


def test_serving_certificate_names_what_the_bootstrap_dials(docs: list[Doc]) -> None:
    bootstrap = yaml.safe_load(_bootstrap_files(docs)["bootstrap.yaml"])
    cluster = _xds_cluster(bootstrap)
    (endpoint,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    address = endpoint["endpoint"]["address"]["socket_address"]
    service = _one(docs, "Service", CONTROL_PLANE, CONTROL_NS)
    host = f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc"
    assert address == {"address": host, "port_value": 18000}
    assert cluster["type"] == "STRICT_DNS"
    assert 18000 in {p["port"] for p in service["spec"]["ports"]}
    cert = _one(docs, "Certificate", f"{CONTROL_PLANE}-xds-tls", CONTROL_NS)
    assert host in cert["spec"]["dnsNames"]
    assert "server auth" in cert["spec"]["usages"]
    tls = cluster["transport_socket"]["typed_config"]
    assert tls["@type"].endswith("tls.v3.UpstreamTlsContext")
    assert tls["sni"] == host
    common = tls["common_tls_context"]
    # The control plane is verified by the CA *and* by its DNS SAN.
    validation = common["combined_validation_context"]
    assert validation["default_validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "DNS", "matcher": {"exact": host}}
    ]
    # HTTP/2 (gRPC) to the control plane; ADS delta; CDS and LDS from ADS.
    options = cluster["typed_extension_protocol_options"]
    http = options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in http["explicit_http_config"]
    ads = bootstrap["dynamic_resources"]["ads_config"]
    assert ads["api_type"] == "DELTA_GRPC"
    assert ads["grpc_services"] == [{"envoy_grpc": {"cluster_name": "xds_cluster"}}]
    assert bootstrap["dynamic_resources"]["cds_config"]["ads"] == {}
    assert bootstrap["dynamic_resources"]["lds_config"]["ads"] == {}
    assert "node" not in bootstrap, "the node comes from --service-node/--service-cluster"
    assert bootstrap["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"


def _sds_files(docs: list[Doc]) -> dict[str, Doc]:
    """The bootstrap's file-based SDS secrets, by secret name, read from the ConfigMap."""
    files = _bootstrap_files(docs)
    bootstrap = yaml.safe_load(files["bootstrap.yaml"])
    common = _xds_cluster(bootstrap)["transport_socket"]["typed_config"]["common_tls_context"]
    configs = [
        *common["tls_certificate_sds_secret_configs"],
        common["combined_validation_context"]["validation_context_sds_secret_config"],
    ]
    mount = _envoy_mount(docs, "envoy-bootstrap")["mountPath"]
    out = {}
    for config in configs:
        path = config["sds_config"]["path_config_source"]["path"]
        assert path.startswith(f"{mount}/"), path
        (resource,) = yaml.safe_load(files[path.removeprefix(f"{mount}/")])["resources"]
        assert resource["name"] == config["name"]
        out[config["name"]] = resource
    return out


def _envoy_mount(docs: list[Doc], volume: str) -> Doc:
    mounts: list[Doc] = _containers(_app(docs))["envoy"]["volumeMounts"]
    (mount,) = [m for m in mounts if m["name"] == volume]
    return mount


def test_envoy_client_certificate_is_the_workloads_certificate(docs: list[Doc]) -> None:
    app = _app(docs)
    envoy = _containers(app)["envoy"]
    secrets = _sds_files(docs)
    cert = _one(docs, "Certificate", f"{APP}-xds-tls", "shop")
    paths = [
        secrets["xds_client_cert"]["tls_certificate"]["certificate_chain"]["filename"],
        secrets["xds_client_cert"]["tls_certificate"]["private_key"]["filename"],
        secrets["xds_trusted_ca"]["validation_context"]["trusted_ca"]["filename"],
    ]
    for path, key in zip(paths, ("tls.crt", "tls.key", "ca.crt"), strict=True):
        mount, volume = _mount_of(app, envoy, path)
        assert path == f"{mount['mountPath']}/{key}"
        assert volume["secret"]["secretName"] == cert["spec"]["secretName"]
        assert mount["readOnly"] is True
    # Rotation: both secrets watch the Secret volume's root, where the kubelet swaps ..data.
    tls_mount = _mount_of(app, envoy, paths[0])[0]["mountPath"]
    assert secrets["xds_client_cert"]["tls_certificate"]["watched_directory"] == {"path": tls_mount}
    assert secrets["xds_trusted_ca"]["validation_context"]["watched_directory"] == {
        "path": tls_mount
    }
    # Sibling mounts: nothing is mounted inside another mount of the same container.
    mount_paths = [m["mountPath"].rstrip("/") + "/" for m in envoy["volumeMounts"]]
    for a in mount_paths:
        assert not any(b != a and b.startswith(a) for b in mount_paths), a
    assert "client auth" in cert["spec"]["usages"]


def test_app_identity_is_a_workload_of_the_registry(tmp_path: Path, docs: list[Doc]) -> None:
    """The URI SAN of the app's Certificate is its ServiceAccount's SPIFFE ID, and
    workloads.yaml maps exactly that identity to the workload Envoy names itself as."""
    from control_plane.registry.workloads import load_workloads

    app = _app(docs)
    cert = _one(docs, "Certificate", f"{APP}-xds-tls", "shop")
    (uri,) = cert["spec"]["uris"]
    account = _pod(app)["serviceAccountName"]
    assert uri == f"spiffe://cluster.local/ns/{app['metadata']['namespace']}/sa/{account}"
    assert "dnsNames" not in cert["spec"] and "commonName" not in cert["spec"]
    _one(docs, "ServiceAccount", account, app["metadata"]["namespace"])
    workloads_cm = _one(docs, "ConfigMap", "integration-workloads", CONTROL_NS)
    listed = yaml.safe_load(workloads_cm["data"]["workloads.yaml"])["workloads"]
    (entry,) = [w for w in listed if uri in w["identities"]]
    envoy_env = _env(_containers(app)["envoy"])
    assert entry["name"] == envoy_env["WORKLOAD_NAME"]["value"]
    # The control plane's own loader agrees: that SAN is that workload, and the declared
    # integration for it is one it may run.
    path = tmp_path / "workloads.yaml"
    path.write_text(workloads_cm["data"]["workloads.yaml"])
    book = load_workloads(path)
    workload = book.identify([uri], [])
    assert workload is not None and workload.name == entry["name"]
    assert book.identify(["spiffe://cluster.local/ns/shop/sa/other"], []) is None
    config = _one(docs, "ConfigMap", "integration-control-plane-config", CONTROL_NS)
    integrations = yaml.safe_load(config["data"]["integrations.yaml"])["integrations"]
    assert [i["id"] for i in integrations if entry["name"] in i.get("workloads", [])]
    assert all(i["tenant"] == entry["tenant"] for i in integrations)


def test_app_pod_carries_only_envoy_with_the_node_from_the_downward_api(
    docs: list[Doc],
) -> None:
    app = _app(docs)
    containers = _containers(app)
    assert set(containers) == {"app", "envoy"}, "no control plane in the application pod"
    envoy = containers["envoy"]
    args = envoy["args"]
    assert args[args.index("--config-path") + 1].endswith("/bootstrap.yaml")
    assert args[args.index("--service-node") + 1] == "$(POD_NAME)"
    assert args[args.index("--service-cluster") + 1] == "$(WORKLOAD_NAME)"
    env = _env(envoy)
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    # $(VAR) expands only from variables defined before it in env: these are all literal
    # or downward-API values, so order does not matter, but they must exist.
    assert env["WORKLOAD_NAME"]["value"] == APP
    config_path = args[args.index("--config-path") + 1]
    mount, volume = _mount_of(app, envoy, config_path)
    assert volume["configMap"]["name"].startswith("envoy-bootstrap-")
    assert config_path.removeprefix(mount["mountPath"] + "/") in _bootstrap_files(docs)
    # No credentials reach the application pod: no integration Secret mounted anywhere.
    secrets = {v["secret"]["secretName"] for v in _pod(app)["volumes"] if "secret" in v}
    assert secrets == {_one(docs, "Certificate", f"{APP}-xds-tls", "shop")["spec"]["secretName"]}
    # The control plane's NetworkPolicy admits this pod to xDS by these labels.
    assert app["spec"]["template"]["metadata"]["labels"]["integration-service/xds-client"] == "true"


def test_stats_listener_is_the_base_copy(docs: list[Doc]) -> None:
    """Kustomize cannot read the base's file from here: the copy must not drift."""
    base = (MANIFESTS / "base" / "envoy" / "stats-listener.yaml").read_text()
    assert _bootstrap_files(docs)["stats-listener.yaml"] == base


def test_shared_registry_validates() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "control_plane.cli",
            "validate",
            str(SHARED / "control-plane" / "integrations.yaml"),
            "--rate-limits",
            str(SHARED / "control-plane" / "rate_limits.yaml"),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- the real Envoy -------------------------------------------------------------------------


def _secret_volume(root: Path, version: str, ca: Any, *, host: str) -> None:
    """Write one version of a cert-manager Secret the way the kubelet lays out a Secret
    volume: files are links through ``..data`` to a timestamped directory."""
    certificate = ca.issue_cert(host)
    version_dir = root / version
    version_dir.mkdir(parents=True)
    (version_dir / "tls.crt").write_bytes(b"".join(b.bytes() for b in certificate.cert_chain_pems))
    (version_dir / "tls.key").write_bytes(certificate.private_key_pem.bytes())
    (version_dir / "ca.crt").write_bytes(ca.cert_pem.bytes())


def _point_data_at(root: Path, version: str) -> None:
    """The kubelet's atomic update: a new ``..data`` link renamed over the old one."""
    tmp = root / "..data_tmp"
    tmp.symlink_to(version)
    os.replace(tmp, root / "..data")
    for key in ("tls.crt", "tls.key", "ca.crt"):
        if not (root / key).is_symlink():
            (root / key).symlink_to(f"..data/{key}")


@pytest.fixture
def envoy_tree(tmp_path: Path, docs: list[Doc]) -> Path:
    """The ConfigMap's files under ``<tmp>/etc/envoy/bootstrap`` and a Secret volume at
    ``<tmp>/etc/envoy/xds-tls``: the pod's paths with a prefix, nothing else changed."""
    import trustme

    files = _bootstrap_files(docs)
    bootstrap_dir = tmp_path / "etc/envoy/bootstrap"
    bootstrap_dir.mkdir(parents=True)
    for name, text in files.items():
        if name == "bootstrap.yaml":
            assert "port_value: 9901" in text
            text = text.replace("port_value: 9901", "port_value: 0")  # a free admin port
        assert name == "stats-listener.yaml" or "/etc/envoy/" in text, name
        (bootstrap_dir / name).write_text(text.replace("/etc/envoy/", f"{tmp_path}/etc/envoy/"))
    tls = tmp_path / "etc/envoy/xds-tls"
    tls.mkdir()
    _secret_volume(tls, "..v1", trustme.CA(), host="checkout.shop")
    _secret_volume(tls, "..v2", trustme.CA(), host="checkout.shop")
    _point_data_at(tls, "..v1")
    return tmp_path


def _envoy() -> str:
    from control_plane.sidecar.binary import find_envoy_binary

    return str(find_envoy_binary())


@pytest.mark.envoy
def test_envoy_accepts_the_shared_bootstrap(envoy_tree: Path) -> None:
    bootstrap = envoy_tree / "etc/envoy/bootstrap"
    result = subprocess.run(
        [
            _envoy(),
            "--mode",
            "validate",
            "--config-path",
            str(bootstrap / "bootstrap.yaml"),
            "--config-yaml",
            (bootstrap / "stats-listener.yaml").read_text(),
            "--service-node",
            "checkout-7d9f-abcde",
            "--service-cluster",
            APP,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _loaded_serials(admin: str) -> tuple[set[int], set[int]]:
    """Serial numbers of the client certificate and the CA Envoy holds for xds_cluster."""
    with urllib.request.urlopen(f"{admin}/certs", timeout=2) as response:  # noqa: S310
        certs = json.load(response)["certificates"]
    chain = {int(c["serial_number"], 16) for e in certs for c in e.get("cert_chain", [])}
    ca = {int(c["serial_number"], 16) for e in certs for c in e.get("ca_cert", [])}
    return chain, ca


def _serial(pem: Path) -> int:
    from cryptography import x509

    serial: int = x509.load_pem_x509_certificate(pem.read_bytes()).serial_number
    return serial


@pytest.fixture
def running_shared_envoy(envoy_tree: Path) -> Iterator[str]:
    """Envoy on the shipped bootstrap (admin on a kernel-picked port); its admin URL."""
    bootstrap = envoy_tree / "etc/envoy/bootstrap"
    admin_file = envoy_tree / "admin-address"
    log = (envoy_tree / "envoy.log").open("w")
    process = subprocess.Popen(
        [
            _envoy(),
            "--config-path",
            str(bootstrap / "bootstrap.yaml"),
            "--service-node",
            "checkout-7d9f-abcde",
            "--service-cluster",
            APP,
            "--admin-address-path",
            str(admin_file),
            "--disable-hot-restart",
            "--log-level",
            "warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while not (admin_file.exists() and admin_file.read_text().strip()):
            assert process.poll() is None, (envoy_tree / "envoy.log").read_text()
            assert time.monotonic() < deadline, "Envoy's admin API did not come up"
            time.sleep(0.05)
        yield f"http://{admin_file.read_text().strip()}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.mark.envoy
def test_renewed_certificate_reaches_envoy_without_a_restart(
    envoy_tree: Path, running_shared_envoy: str
) -> None:
    """cert-manager renews, the kubelet swaps the Secret volume's ``..data``: Envoy's
    file-based SDS re-reads the client certificate and the CA (static tls_certificates in a
    bootstrap are read once, at start)."""
    tls = envoy_tree / "etc/envoy/xds-tls"
    first = (_serial(tls / "..v1/tls.crt"), _serial(tls / "..v1/ca.crt"))
    second = (_serial(tls / "..v2/tls.crt"), _serial(tls / "..v2/ca.crt"))
    assert first != second

    def loaded() -> tuple[set[int], set[int]]:
        return _loaded_serials(running_shared_envoy)

    deadline = time.monotonic() + 10
    while loaded() != ({first[0]}, {first[1]}):
        assert time.monotonic() < deadline, loaded()
        time.sleep(0.05)
    _point_data_at(tls, "..v2")
    deadline = time.monotonic() + 10
    while loaded() != ({second[0]}, {second[1]}):
        assert time.monotonic() < deadline, loaded()
        time.sleep(0.05)
    shutil.rmtree(tls / "..v1")  # the kubelet removes the old version; Envoy holds the new
    assert loaded() == ({second[0]}, {second[1]})


def test_app_envoy_files_are_what_render_prints(tmp_path: Path) -> None:
    """The overlay's bootstrap and SDS files are the output of ``render --format bootstrap
    --topology shared`` (node left to ``--service-node``/``--service-cluster``)."""
    out = tmp_path / "rendered"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "control_plane.cli",
            "render",
            "--format",
            "bootstrap",
            "--topology",
            "shared",
            "--tls-dir",
            "/etc/envoy/xds-tls",
            "--sds-dir",
            "/etc/envoy/bootstrap",
            "--output-dir",
            str(out),
        ],
        check=True,
        capture_output=True,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("INTEGRATION_SERVICE_")},
    )
    shipped = SHARED / "example-app" / "envoy"
    for name in ("bootstrap.yaml", "sds-xds-client-cert.yaml", "sds-xds-ca.yaml"):
        rendered = yaml.safe_load((out / name).read_text())
        rendered.pop("node", None)
        assert rendered == yaml.safe_load((shipped / name).read_text()), name
