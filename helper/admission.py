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

REPO_ROOT = Path(__file__).resolve().parent.parent
KSERVE_VALUES = REPO_ROOT / "platform" / "kserve-values.yaml"

# --- Knative --------------------------------------------------------------------------------------
# Defaults: https://github.com/knative/serving/blob/knative-v1.18.0/pkg/apis/config/features.go#L82
KNATIVE_DEFAULTS = {
    "kubernetes.podspec-affinity": "disabled",
    "kubernetes.podspec-topologyspreadconstraints": "disabled",
    "kubernetes.podspec-hostaliases": "disabled",
    "kubernetes.podspec-nodeselector": "disabled",
    "kubernetes.podspec-runtimeclassname": "disabled",
    "kubernetes.podspec-tolerations": "disabled",
    "kubernetes.podspec-securitycontext": "disabled",
    "kubernetes.podspec-shareprocessnamespace": "disabled",
    "kubernetes.podspec-priorityclassname": "disabled",
    "kubernetes.podspec-schedulername": "disabled",
    "kubernetes.podspec-init-containers": "disabled",
    "kubernetes.podspec-dnspolicy": "disabled",
    "kubernetes.podspec-dnsconfig": "disabled",
    "kubernetes.podspec-hostipc": "disabled",
    "kubernetes.podspec-hostpid": "disabled",
    "kubernetes.podspec-hostnetwork": "disabled",
    "kubernetes.podspec-volumes-emptydir": "enabled",
    "kubernetes.podspec-volumes-hostpath": "disabled",
    "kubernetes.podspec-volumes-csi": "disabled",
    "kubernetes.podspec-persistent-volume-claim": "disabled",
    "kubernetes.containerspec-addcapabilities": "disabled",
    "secure-pod-defaults": "disabled",
}
# PodSpecMask: https://github.com/knative/serving/blob/knative-v1.18.0/pkg/apis/serving/fieldmask.go#L212
POD_ALLOWED = {
    "serviceAccountName", "containers", "volumes", "imagePullSecrets", "enableServiceLinks",
    "automountServiceAccountToken",
}  # fmt: skip
POD_FLAGGED = {
    "affinity": "kubernetes.podspec-affinity",
    "topologySpreadConstraints": "kubernetes.podspec-topologyspreadconstraints",
    "hostAliases": "kubernetes.podspec-hostaliases",
    "nodeSelector": "kubernetes.podspec-nodeselector",
    "runtimeClassName": "kubernetes.podspec-runtimeclassname",
    "tolerations": "kubernetes.podspec-tolerations",
    "securityContext": "kubernetes.podspec-securitycontext",
    "shareProcessNamespace": "kubernetes.podspec-shareprocessnamespace",
    "priorityClassName": "kubernetes.podspec-priorityclassname",
    "schedulerName": "kubernetes.podspec-schedulername",
    "initContainers": "kubernetes.podspec-init-containers",
    "dnsPolicy": "kubernetes.podspec-dnspolicy",
    "dnsConfig": "kubernetes.podspec-dnsconfig",
    "hostIPC": "kubernetes.podspec-hostipc",
    "hostPID": "kubernetes.podspec-hostpid",
    "hostNetwork": "kubernetes.podspec-hostnetwork",
}
# PodSecurityContextMask (fieldmask.go#L656): with the flag off nothing passes (but seccomp
# under secure-pod-defaults); with it on, only these.
POD_SECURITY_WITH_FLAG = {
    "runAsUser", "runAsGroup", "runAsNonRoot", "fsGroup", "supplementalGroups", "seccompProfile",
}  # fmt: skip
# SecurityContextMask (fieldmask.go#L700): container level, allowed without any flag
# (privileged only as false, capabilities.add only with containerspec-addcapabilities).
CONTAINER_SECURITY = {
    "capabilities", "readOnlyRootFilesystem", "runAsUser", "runAsGroup", "runAsNonRoot",
    "allowPrivilegeEscalation", "seccompProfile", "privileged",
}  # fmt: skip
# VolumeSourceMask (fieldmask.go#L49) and validateVolume (k8s_validation.go#L121)
VOLUME_ALWAYS = {"secret", "configMap", "projected"}
VOLUME_FLAGGED = {
    "emptyDir": "kubernetes.podspec-volumes-emptydir",
    "persistentVolumeClaim": "kubernetes.podspec-persistent-volume-claim",
    "hostPath": "kubernetes.podspec-volumes-hostpath",
    "csi": "kubernetes.podspec-volumes-csi",
}
# https://github.com/knative/serving/blob/knative-v1.18.0/pkg/apis/serving/k8s_validation.go#L42-L79
# (8012/8013/8022/9090/9091 from pkg/networking, 8008 knative.dev/pkg/profiling)
RESERVED_PORTS = {8012, 8013, 8022, 9090, 9091, 8008}
PORT_NAMES = {"", "h2c", "http1"}
RESERVED_PATHS = {"/", "/dev", "/dev/log"}
RESERVED_ENV = {"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"}


def knative_flags(platform_objs: Iterable[dict] = ()) -> dict[str, str]:
    """Knative's defaults overridden by the config-features ConfigMap platform:install applies."""
    flags = dict(KNATIVE_DEFAULTS)
    for obj in platform_objs:
        meta = obj.get("metadata") or {}
        if (obj.get("kind"), meta.get("name"), meta.get("namespace")) == (
            "ConfigMap",
            "config-features",
            "knative-serving",
        ):
            flags.update({k: str(v).lower() for k, v in (obj.get("data") or {}).items()})
    return flags


def _on(flags: Mapping[str, str], name: str) -> bool:
    return flags.get(name, "disabled") != "disabled"


def knative_pod_findings(pod: Mapping, flags: Mapping[str, str], where: str) -> list[str]:
    """Pod-level fields of what becomes a Knative Service's template, against the flags."""
    problems = []
    for key, value in pod.items():
        if key in POD_FLAGGED and value not in (None, {}, []) and not _on(flags, POD_FLAGGED[key]):
            if key == "securityContext" and _on(flags, "secure-pod-defaults"):
                value = {k: v for k, v in value.items() if k != "seccompProfile"}
                if not value:
                    continue
            problems.append(
                f"{where}.{key} needs Knative's {POD_FLAGGED[key]} flag (disabled in "
                "config-features): set it per container, or enable the flag"
            )
    sec = pod.get("securityContext") or {}
    if _on(flags, "kubernetes.podspec-securitycontext"):
        problems += _outside(sec, POD_SECURITY_WITH_FLAG, f"{where}.securityContext", "never")
    if pod.get("automountServiceAccountToken") is True:
        problems.append(f"{where}.automountServiceAccountToken may only be false in Knative")
    problems += _volume_findings(pod.get("volumes") or [], flags, where)
    return problems


def _outside(fields: Mapping, allowed: set[str], at: str, how: str) -> list[str]:
    return [f"{at}.{k} is {how} allowed by Knative" for k in fields if k not in allowed]


def _volume_findings(volumes: list, flags: Mapping[str, str], where: str) -> list[str]:
    problems = []
    for vol in volumes:
        for source in set(vol) - {"name"}:
            if source in VOLUME_ALWAYS:
                continue
            flag = VOLUME_FLAGGED.get(source)
            if flag is None:
                problems.append(f"{where}.volumes[{vol.get('name')}]: {source} is not allowed")
            elif flags.get(flag) != "enabled":
                problems.append(f"{where}.volumes[{vol.get('name')}]: {source} needs {flag}")
    return problems


def knative_container_findings(containers: list, flags: Mapping[str, str], where: str) -> list[str]:
    problems = []
    ports = [p for c in containers for p in c.get("ports") or []]
    if len(ports) > 1:
        problems.append(f"{where}: {len(ports)} container ports; Knative serves exactly one")
    for port in ports:
        if port.get("containerPort") in RESERVED_PORTS:
            problems.append(f"{where}: port {port.get('containerPort')} is reserved by Knative")
        if port.get("name", "") not in PORT_NAMES:
            problems.append(f"{where}: port name '{port.get('name')}' (only h2c, http1 or none)")
        if port.get("protocol", "TCP") != "TCP":
            problems.append(f"{where}: port protocol {port.get('protocol')} (only TCP)")
    for c in containers:
        at = f"{where}.containers[{c.get('name')}]"
        sec = c.get("securityContext") or {}
        problems += _outside(sec, CONTAINER_SECURITY, f"{at}.securityContext", "not")
        if sec.get("privileged") is True:
            problems.append(f"{at}.securityContext.privileged may only be false in Knative")
        if (sec.get("capabilities") or {}).get("add") and not _on(
            flags, "kubernetes.containerspec-addcapabilities"
        ):
            problems.append(
                f"{at}: capabilities.add needs kubernetes.containerspec-addcapabilities"
            )
        if c.get("name") == "queue-proxy":
            problems.append(f"{at}: 'queue-proxy' is a reserved container name")
        problems += [
            f"{at}: env {e.get('name')} is reserved by Knative"
            for e in c.get("env") or []
            if e.get("name") in RESERVED_ENV
        ]
        problems += [
            f"{at}: mountPath {m.get('mountPath')} is reserved"
            for m in c.get("volumeMounts") or []
            if m.get("mountPath") in RESERVED_PATHS
        ]
        if c.get("lifecycle"):
            problems.append(f"{at}.lifecycle is not allowed by Knative")
    return problems  # fmt: skip


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
