"""platform/: pinned versions that fit each other, what platform:install applies per stack,
and the aws StorageClass matched to the add-on Terraform installs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helper import validate
from helper.settings import REPO_ROOT

pytestmark = pytest.mark.cluster

TASKFILE = REPO_ROOT / "platform/Taskfile.yml"
TASK = Path(sys.executable).parent / "task"
# KServe's recommended matrix for its 0.15 release ("Serverless Installation Guide",
# https://kserve.github.io/website/latest/admin/serverless/serverless/): Kubernetes >= 1.30,
# cert-manager >= 1.15.0, Knative 1.17/1.18 on Kubernetes 1.32 (1.16/1.17 on 1.31).
KSERVE_MATRIX = {
    "v0.15.2": {"min_k8s": (1, 30), "min_cert_manager": (1, 15), "knative": {(1, 17), (1, 18)}}
}


def _versions() -> dict[str, str]:
    return yaml.safe_load(TASKFILE.read_text())["vars"]


def _minor(version: str) -> tuple[int, int]:
    major, minor = re.search(r"(\d+)\.(\d+)", version).groups()
    return int(major), int(minor)


def test_pinned_knative_cert_manager_and_kubernetes_fit_the_kserve_release():
    v = _versions()
    matrix = KSERVE_MATRIX[v["KSERVE_VERSION"]]
    assert _minor(v["KNATIVE_VERSION"]) in matrix["knative"]
    assert _minor(v["CERT_MANAGER_VERSION"]) >= matrix["min_cert_manager"]
    for tfvars in (REPO_ROOT / "terraform/envs").glob("*/terraform.tfvars"):
        k8s = re.search(r'kubernetes_version\s*=\s*"([^"]+)"', tfvars.read_text()).group(1)
        assert _minor(k8s) >= matrix["min_k8s"], tfvars


def _dry(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in {"STACK", "DOMAIN"}}
    proc = subprocess.run(
        [str(TASK), "--dry", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.stdout + proc.stderr


def test_storage_class_is_applied_on_aws_stacks_only():
    assert "kubectl apply -k platform/k8s/aws" in _dry("platform:storage", "STACK=aws-dev")
    assert "kubectl apply -k platform/k8s/aws" not in _dry("platform:storage", "STACK=ionos-prod")


def test_knative_gets_a_domain_kourier_exposes():
    with_domain = _dry("platform:knative", "DOMAIN=ml.example.com")
    assert """-p '{"data":{"ml.example.com":""}}'""" in with_domain
    assert "serving-default-domain.yaml" in _dry("platform:knative")
    assert "not a DNS domain" in _dry("platform:knative", "DOMAIN=not a domain")


def test_aws_storage_class_is_the_default_and_uses_the_terraform_addon():
    (sc,) = validate.render(REPO_ROOT / "platform/k8s/aws")
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    assert sc["provisioner"] == "ebs.csi.aws.com"
    main = (REPO_ROOT / "terraform/modules/aws-eks-cluster/main.tf").read_text()
    assert "aws-ebs-csi-driver" in main


def test_the_mlflow_volume_relies_on_the_default_storage_class():
    objs = validate.render(REPO_ROOT / "ml_platform/k8s/overlays/dev")
    pvc = next(o for o in objs if o["kind"] == "PersistentVolumeClaim")
    assert "storageClassName" not in pvc["spec"]
