"""Admission rules the CRD schemas cannot express, each encoded once, beside the upstream
source it mirrors (pinned to the versions platform/Taskfile.yml installs).

- Knative Serving (knative-v1.18.0): which pod-spec fields a Knative Service may carry, gated by
  the feature flags of config-features (ours: platform/k8s/knative/config-features.yaml).
  KServe copies the predictor's pod fields and the ServingRuntime's pod template into that
  Knative Service, so an InferenceService that passes its own webhook can still never get Ready.
- KServe (v0.15.2): canaryTrafficPercent does something only in Serverless mode; the model's
  runtime must support its format and protocol.
- Stackable spark-k8s-operator (25.7.0): podOverrides may only name the operator's containers;
  an S3Connection without `tls` speaks plain HTTP.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

# the Knative rules live in helper/knative_admission.py; re-exported for existing importers
from helper.knative_admission import (  # noqa: F401
    KNATIVE_DEFAULTS,
    knative_container_findings,
    knative_flags,
    knative_pod_findings,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
KSERVE_VALUES = REPO_ROOT / "platform" / "kserve-values.yaml"

# --- KServe ---------------------------------------------------------------------------------------
# Only the Knative reconciler reads canaryTrafficPercent; RawDeployment ignores it silently:
# https://github.com/kserve/kserve/blob/v0.15.2/pkg/controller/v1beta1/inferenceservice/reconcilers/knative/ksvc_reconciler.go#L113-L135
MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
COMPONENTS = ("predictor", "transformer", "explainer")
# Fields of a component that are pod-spec fields (v1beta1.PodSpec inlined into the component).
NOT_POD_FIELDS = {
    "model", "minReplicas", "maxReplicas", "scaleTarget", "scaleMetric", "scaleMetricType",
    "containerConcurrency", "timeout", "canaryTrafficPercent", "logger", "batcher", "labels",
    "annotations", "deploymentStrategy", "autoScaling", "workerSpec", "storageUri",
}  # fmt: skip


def default_deployment_mode(values_file: Path = KSERVE_VALUES) -> str:
    """The mode KServe is installed with (chart key kserve.controller.deploymentMode)."""
    if not values_file.is_file():
        return "Serverless"  # the chart's default in v0.15.2 values.yaml
    doc = yaml.safe_load(values_file.read_text(encoding="utf-8")) or {}
    mode = ((doc.get("kserve") or {}).get("controller") or {}).get("deploymentMode")
    return mode or "Serverless"  # the chart's default in v0.15.2 values.yaml


def kserve_findings(isvc: dict, objs: Iterable[dict], mode_default: str) -> list[str]:
    spec = isvc.get("spec") or {}
    annotations = (isvc.get("metadata") or {}).get("annotations") or {}
    mode = annotations.get(MODE_ANNOTATION, mode_default)
    problems = []
    for comp in COMPONENTS:
        if (spec.get(comp) or {}).get("canaryTrafficPercent") is not None and mode != "Serverless":
            problems.append(
                f"spec.{comp}.canaryTrafficPercent has no effect in {mode} mode (KServe splits "
                "traffic only through Knative revisions: Serverless)"
            )
    model = (spec.get("predictor") or {}).get("model") or {}
    runtimes = {o["metadata"]["name"]: o for o in objs if o.get("kind") == "ServingRuntime"}
    runtime = runtimes.get(model.get("runtime"))
    if runtime:
        rspec = runtime.get("spec") or {}
        formats = {f.get("name") for f in rspec.get("supportedModelFormats") or []}
        fmt = (model.get("modelFormat") or {}).get("name")
        if fmt not in formats:
            problems.append(f"runtime {model['runtime']} does not support modelFormat {fmt}")
        protocol = model.get("protocolVersion")
        if protocol and protocol not in (rspec.get("protocolVersions") or []):
            problems.append(f"runtime {model['runtime']} does not serve protocol {protocol}")
    return problems


def isvc_pod_findings(isvc: dict, flags: Mapping[str, str]) -> list[str]:
    problems = []
    for comp in COMPONENTS:
        component = (isvc.get("spec") or {}).get(comp)
        if not component:
            continue
        pod = {k: v for k, v in component.items() if k not in NOT_POD_FIELDS}
        problems += knative_pod_findings(pod, flags, f"spec.{comp}")
        containers = list(pod.get("containers") or [])
        if "model" in component:
            containers.append({"name": "kserve-container", **component["model"]})
        problems += knative_container_findings(containers, flags, f"spec.{comp}")
    return problems


# --- Stackable ------------------------------------------------------------------------------------
# Container names the operator builds (SparkContainer, kebab-case); a podOverride naming any
# other container adds an image-less container and the pod is rejected:
# https://github.com/stackabletech/spark-k8s-operator/blob/25.7.0/rust/operator-binary/src/crd/roles.rs#L84
SPARK_CONTAINERS = {"spark-submit", "job", "requirements", "spark", "vector", "tls"}
SPARK_ROLES = ("job", "driver", "executor")


def stackable_findings(obj: dict) -> list[str]:
    spec, kind = obj.get("spec") or {}, obj.get("kind")
    problems = []
    if kind == "SparkApplication":
        for role in SPARK_ROLES:
            pod = ((spec.get(role) or {}).get("podOverrides") or {}).get("spec") or {}
            for c in pod.get("containers") or []:
                if c.get("name") not in SPARK_CONTAINERS:
                    problems.append(
                        f"spec.{role}.podOverrides: container '{c.get('name')}' is not one the "
                        f"operator creates ({', '.join(sorted(SPARK_CONTAINERS))})"
                    )
    if kind == "S3Connection" and spec.get("port") == 443 and not spec.get("tls"):
        # https://docs.stackable.tech/home/stable/concepts/s3/ : no `tls` means plain HTTP
        problems.append("spec.tls is missing: Stackable would speak plain HTTP to port 443")
    return problems


# --- all rules ------------------------------------------------------------------------------------


def findings(obj: dict, objs: Iterable[dict], flags: Mapping[str, str]) -> list[str]:
    kind = obj.get("kind")
    if kind == "InferenceService":
        return isvc_pod_findings(obj, flags) + kserve_findings(obj, objs, default_deployment_mode())
    if kind in {"ServingRuntime", "ClusterServingRuntime"}:
        spec = obj.get("spec") or {}
        pod = {
            k: spec[k] for k in ("volumes", "nodeSelector", "tolerations", "affinity") if k in spec
        }
        return knative_pod_findings(pod, flags, "spec") + knative_container_findings(
            spec.get("containers") or [], flags, "spec"
        )
    if kind in {"SparkApplication", "S3Connection"}:
        return stackable_findings(obj)
    return []
