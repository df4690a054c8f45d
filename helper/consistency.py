"""Cross-file checks over the rendered targets: what one object's schema cannot see.

A cluster rejects or breaks on names that disagree between files: a bucket that is not the
stack's, an object or model name that is not the selected data set's, an image no workflow
pushes, a Secret nothing creates, a ServingRuntime that is not there. Each check here walks
every object of every rendered target (so objects other changes add are covered without naming
them) and returns findings; `check_rendered` runs them all plus the value checks per stack and
data set (helper/stack_values.py) and the admission rules (helper/admission.py), and is what
`task validate` calls.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from helper import admission, cluster_dataset, images, stacks
from helper.pod_policy import pod_specs

# the per-stack and per-data-set value checks live in helper/stack_values.py
from helper.stack_values import (
    dataset_findings,
    holds_dataset_values,
    holds_s3_values,
    stack_findings,
    walk,
)
from helper.validate import Finding, object_name, render

# Secrets created from the environment by a task (never committed): name -> the task.
# tests/cluster/test_consistency.py runs each task against a stand-in kubectl.
TASK_SECRETS = {
    "s3-credentials": "serve:secret",
    "spark-s3-credentials": "data:secret",  # found by the SecretClass through its label
    "predictor-auth": "serve:auth-secret",
    "ghcr-pull": "platform:pull-secret",
}
# Other objects a workload needs that its own target does not render: (kind, name) -> the task
# that creates them. tests/cluster/test_consistency.py checks each claim.
TASK_OBJECTS = {
    ("ServiceAccount", "promotion"): "serve:deploy",  # serving base: promotion-rbac.yaml
    ("ConfigMap", "promotion-candidate"): "serve:promote:cluster",  # promotion.launch
}
PULL_SECRET = "ghcr-pull"  # pragma: allowlist secret (a Secret name)
PLATFORM_PREFIX = "platform/"


def _repo_root(target: Path) -> Path:
    """The checkout a target belongs to (a test's copy has its own platform/dataset)."""
    for parent in Path(target).resolve().parents:
        if (parent / cluster_dataset.COMPONENT_DIR).is_dir():
            return parent
    return stacks.REPO_ROOT


# --- images -----------------------------------------------------------------------------------


def image_findings(obj: dict, scheme: images.ImageScheme, committed: bool = True) -> list[str]:
    """Every image is one CI pushes (its registry, a name of the matrix), with an immutable tag
    (the release tag in committed renders) and a pull policy that fits an immutable tag."""
    problems = []
    ours = {scheme.repository(n) for n in scheme.names}
    for use in images.iter_images(obj):
        repo, tag, digest = images.split_image(use.image)
        if repo not in ours:
            problems.append(
                f"{use.where}: image '{use.image}' is not one CI pushes ({sorted(ours)}): name "
                f"it by its bare name ({', '.join(scheme.names)}); platform/images sets the rest"
            )
            continue
        if not digest and not images.IMMUTABLE_TAG.match(tag or ""):
            problems.append(f"{use.where}: tag '{tag}' of {repo} is mutable or missing")
        elif committed and not digest and tag != scheme.release_tag:
            problems.append(f"{use.where}: {repo}:{tag} is not the release {scheme.release_tag}")
        spark = use.where.endswith(".sparkImage")
        if use.pull_policy not in ({"IfNotPresent"} if spark else {"IfNotPresent", None}):
            problems.append(
                f"{use.where}: pullPolicy {use.pull_policy} for an immutable tag (use "
                f"IfNotPresent{'; Stackable defaults to Always' if spark else ''})"
            )
    return problems


def pull_secret_findings(obj: dict, scheme: images.ImageScheme) -> list[str]:
    """Pods that run our (possibly private) images list the pull Secret the task creates."""
    registry = scheme.registry + "/"
    problems = []
    if obj.get("kind") == "SparkApplication":
        spark = (obj.get("spec") or {}).get("sparkImage") or {}
        if str(spark.get("custom", "")).startswith(registry) and PULL_SECRET not in {
            s.get("name") for s in spark.get("pullSecrets") or []
        }:
            problems.append(f"spec.sparkImage.pullSecrets: no {PULL_SECRET}")
    for where, pod in pod_specs(obj) or []:
        runs_ours = any(u.image.startswith(registry) for u in images.iter_images(pod))
        listed = {s.get("name") for s in pod.get("imagePullSecrets") or []}
        if runs_ours and PULL_SECRET not in listed:
            problems.append(f"{where}.imagePullSecrets: no {PULL_SECRET}")
    return problems


# --- references -------------------------------------------------------------------------------


# Keys whose value names an object that must exist: a plain name, {name: …}, or [{name: …}].
SECRET = "Secret"  # pragma: allowlist secret (the kind Secret)
PLAIN_REFS = {
    "serviceAccountName": "ServiceAccount",
    "claimName": "PersistentVolumeClaim",
    "secretName": SECRET,
    "secretClass": "SecretClass",  # pragma: allowlist secret (a kind)
}
NAMED_REFS = {
    "secretKeyRef": SECRET,
    "secretRef": SECRET,
    "configMapKeyRef": "ConfigMap",
    "configMapRef": "ConfigMap",
    "configMap": "ConfigMap",  # a volume source
}
LIST_REFS = {"imagePullSecrets": SECRET, "pullSecrets": SECRET}
REFERENCE_REFS = {"s3connection": "S3Connection", "connection": "S3Connection"}  # Stackable


def references(obj: dict) -> Iterator[tuple[str, str, str]]:
    """(path, kind, name) of every object this one names and needs to exist."""
    kind = obj.get("kind")
    lists = {**LIST_REFS, **({"secrets": SECRET} if kind == "ServiceAccount" else {})}
    for path, key, value, _ in walk(obj):
        if key in PLAIN_REFS and isinstance(value, str) and value != "default":
            yield path, PLAIN_REFS[key], value
        elif key == "runtime" and kind == "InferenceService":
            yield path, "ServingRuntime", str(value)
        elif key in NAMED_REFS and isinstance(value, dict) and "name" in value:
            yield path, NAMED_REFS[key], str(value["name"])
        elif key in REFERENCE_REFS and isinstance(value, dict) and "reference" in value:
            yield path, REFERENCE_REFS[key], str(value["reference"])
        elif key in lists and isinstance(value, list):
            for i, ref in enumerate(value):
                yield f"{path}[{i}]", lists[key], str((ref or {}).get("name"))


def reference_findings(obj: dict, known: set[tuple[str, str]]) -> list[str]:
    problems = []
    for path, kind, name in references(obj):
        if (kind, name) in known:
            continue
        hint = " (add it to TASK_SECRETS with the task that creates it)" if kind == "Secret" else ""
        problems.append(f"{path}: {kind} '{name}' is neither rendered nor created by a task{hint}")
    return problems


def known_objects(objs: list[dict]) -> set[tuple[str, str]]:
    found = {(o.get("kind", ""), (o.get("metadata") or {}).get("name", "")) for o in objs}
    return found | {("Secret", name) for name in TASK_SECRETS} | set(TASK_OBJECTS)


# --- putting it together ----------------------------------------------------------------------


def _platform_objects(rendered: Mapping[str, tuple[Path, list[dict]]]) -> list[dict]:
    """Cluster-wide objects platform:install applies (rendered here if not given)."""
    given = [
        o
        for label, (_, objs) in rendered.items()
        if label.startswith(PLATFORM_PREFIX)
        for o in objs
    ]
    if given:
        return given
    return [
        o for target in sorted(stacks.REPO_ROOT.glob("platform/k8s/*/")) for o in render(target)
    ]


def target_findings(
    label: str, target: Path, objs: list[dict], platform_objs: list[dict]
) -> list[Finding]:
    scheme = images.load_scheme()
    names = (
        stacks.overlay_stacks(Path(target))
        if (Path(target) / "kustomization.yaml").is_file()
        else []
    )
    known = known_objects(objs + platform_objs)
    features = admission.knative_flags(platform_objs)
    out: list[Finding] = []
    if len(names) > 1:
        out.append(Finding(label, "-", "stack", f"lists {len(names)} stacks {names}: one expected"))
    values = stacks.read_stack(names[0]) if names else None
    root = _repo_root(target)
    is_overlay = (Path(target) / "kustomization.yaml").is_file()
    dataset = (
        cluster_dataset.read_selected(root)
        if is_overlay and cluster_dataset.lists_dataset(Path(target).resolve(), root)
        else None
    )
    for obj in objs:
        checks: list[tuple[str, list[str]]] = [
            ("image", image_findings(obj, scheme)),
            ("pull-secret", pull_secret_findings(obj, scheme)),
            ("reference", reference_findings(obj, known)),
            ("admission", admission.findings(obj, objs, features)),
        ]
        if values is not None:
            checks.append(("stack", stack_findings(obj, names[0], values)))
        elif holds_s3_values(obj):
            checks.append(
                ("stack", ["names S3 values, but the target lists no platform/stacks component"])
            )
        if dataset is not None:
            checks.append(("dataset", dataset_findings(obj, dataset)))
        elif holds_dataset_values(obj):
            checks.append(
                ("dataset", ["depends on the data set, but the target lists no platform/dataset"])
            )
        out += [Finding(label, object_name(obj), check, m) for check, msgs in checks for m in msgs]
    return out


def check_rendered(rendered: Mapping[str, tuple[Path, list[dict]]]) -> list[Finding]:
    """All cross-file checks over {label: (target dir, rendered objects)}."""
    platform_objs = _platform_objects(rendered)
    out: list[Finding] = []
    for label, (target, objs) in rendered.items():
        out += target_findings(label, target, objs, platform_objs)
    return out
