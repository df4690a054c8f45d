"""The platform's pod policy: what every container a manifest runs must declare.

Resources (cpu and memory, requests and limits), no privilege, no escalation, non-root, and a
read-only root unless a `policy.ml-platform.io/readOnlyRootFilesystem` annotation gives the
reason. Apart from `helper.validate` (which renders and schema-checks manifests) because it is
the one place that knows where each kind keeps its pods: Deployments and Jobs, RayJobs, Stackable
SparkApplications, KServe InferenceServices and ServingRuntimes; `pod_specs` also serves the
image checks and the cross-file consistency checks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

EXCEPTION_PREFIX = "policy.ml-platform.io/"
# Only this check may be waived, and only with a reason, because some images cannot run read-only.
WAIVABLE = {"readOnlyRootFilesystem"}
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


@dataclass(frozen=True)
class Container:
    """A container as the policy sees it: where it is, its resources, its effective security."""

    where: str
    resources: dict
    security: dict  # container securityContext over the pod's (runAsNonRoot may come from either)


def _pod_containers(pod: dict, where: str) -> Iterator[Container]:
    pod_sec = pod.get("securityContext") or {}
    for key in ("initContainers", "containers"):
        for c in pod.get(key) or []:
            sec = {**pod_sec, **(c.get("securityContext") or {})}
            yield Container(f"{where}.{key}[{c.get('name')}]", c.get("resources") or {}, sec)


def _spark_containers(spec: dict) -> Iterator[Container]:
    """Stackable roles: resources in `config.resources`, security in `podOverrides`."""
    main = {"job": "spark-submit", "driver": "spark", "executor": "spark"}
    for role, container_name in main.items():
        cfg = spec.get(role) or {}
        res = (cfg.get("config") or {}).get("resources") or {}
        cpu, mem = res.get("cpu") or {}, (res.get("memory") or {}).get("limit")
        resources = {
            "requests": {"cpu": cpu.get("min"), "memory": mem},
            "limits": {"cpu": cpu.get("max"), "memory": mem},
        }
        pod = (cfg.get("podOverrides") or {}).get("spec") or {}
        own = next((c for c in pod.get("containers") or [] if c.get("name") == container_name), {})
        sec = {**(pod.get("securityContext") or {}), **(own.get("securityContext") or {})}
        yield Container(f"spec.{role}[{container_name}]", resources, sec)


def _isvc_containers(spec: dict) -> Iterator[Container]:
    for component in ("predictor", "transformer", "explainer"):
        comp = spec.get(component)
        if not comp:
            continue
        pod_sec = comp.get("securityContext") or {}
        if "model" in comp:
            m = comp["model"]
            sec = {**pod_sec, **(m.get("securityContext") or {})}
            yield Container(f"spec.{component}.model", m.get("resources") or {}, sec)
        yield from _pod_containers(comp, f"spec.{component}")


def pod_specs(obj: dict) -> list[tuple[str, dict]] | None:
    """(where, pod spec) of every pod an object creates; None for kinds that hold no pod spec.

    A ServingRuntime's spec is the pod template KServe merges into the predictor's pod.
    """
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    if kind == "Pod":
        return [("spec", spec)]
    if kind in POD_TEMPLATE_KINDS:
        return [("spec.template.spec", spec["template"]["spec"])]
    if kind == "CronJob":
        return [
            ("spec.jobTemplate.spec.template.spec", spec["jobTemplate"]["spec"]["template"]["spec"])
        ]
    if kind in {"RayJob", "RayCluster"}:
        cluster = spec.get("rayClusterSpec", {}) if kind == "RayJob" else spec
        out = [("head", cluster["headGroupSpec"]["template"]["spec"])]
        for i, group in enumerate(cluster.get("workerGroupSpecs") or []):
            out.append((f"workerGroupSpecs[{i}]", group["template"]["spec"]))
        if "submitterPodTemplate" in spec:
            out.append(("submitter", spec["submitterPodTemplate"]["spec"]))
        return out
    if kind in {"ServingRuntime", "ClusterServingRuntime"}:
        return [("spec", spec)]
    return None


def workload_containers(obj: dict) -> list[Container] | None:
    """The containers an object will run, or None when it runs none."""
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    if kind == "InferenceService":
        return list(_isvc_containers(spec))
    if kind == "SparkApplication":
        return list(_spark_containers(spec))
    specs = pod_specs(obj)
    if specs is None:
        return None
    return [c for where, pod in specs for c in _pod_containers(pod, where)]


def waivers(obj: dict) -> tuple[dict[str, str], list[str]]:
    """Policy waivers from `policy.ml-platform.io/<check>: <reason>` annotations, and misuses."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    granted, problems = {}, []
    for key, reason in annotations.items():
        if not key.startswith(EXCEPTION_PREFIX):
            continue
        check = key[len(EXCEPTION_PREFIX) :]
        if check not in WAIVABLE:
            problems.append(f"annotation {key}: '{check}' cannot be waived")
        elif not str(reason).strip():
            problems.append(f"annotation {key}: a waiver needs a reason")
        else:
            granted[check] = reason
    return granted, problems


def check_container(c: Container, waived: dict[str, str]) -> list[tuple[str, str]]:
    problems = []
    for section in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if not (c.resources.get(section) or {}).get(resource):
                problems.append(("resources", f"{c.where}: no {resource} {section[:-1]}"))
    sec = c.security
    if sec.get("privileged") is True:
        problems.append(("privileged", f"{c.where}: privileged container"))
    if sec.get("allowPrivilegeEscalation") is not False:
        problems.append(("allowPrivilegeEscalation", f"{c.where}: must be set to false"))
    if sec.get("runAsNonRoot") is not True:
        problems.append(("runAsNonRoot", f"{c.where}: runAsNonRoot must be true"))
    if sec.get("readOnlyRootFilesystem") is not True and "readOnlyRootFilesystem" not in waived:
        problems.append(
            (
                "readOnlyRootFilesystem",
                f"{c.where}: root file system not read-only and no "
                f"{EXCEPTION_PREFIX}readOnlyRootFilesystem reason given",
            )
        )
    return problems


def check_policy(obj: dict) -> list[tuple[str, str]]:
    containers = workload_containers(obj)
    if containers is None:
        return []
    waived, problems = waivers(obj)
    out = [("waiver", p) for p in problems]
    if not containers:
        out.append(("resources", "workload defines no containers"))
    for c in containers:
        out += check_container(c, waived)
    return out
