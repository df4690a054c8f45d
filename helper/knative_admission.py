"""Knative Serving's admission rules for the pods KServe creates (knative-v1.18.0).

Which pod-spec fields a Knative Service may carry, gated by the feature flags of
config-features (ours: platform/k8s/knative/config-features.yaml). KServe copies the
predictor's pod fields and the ServingRuntime's pod template into that Knative Service, so an
InferenceService that passes its own webhook can still never get Ready. Apart from
`helper.admission` (KServe and Stackable rules, and the one entry point `findings`) because
Knative's field lists are most of the rules by size.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

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
