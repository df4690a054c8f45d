"""Cross-file checks over the rendered targets: what one object's schema cannot see.

A cluster rejects or breaks on names that disagree between files: a bucket that is not the
stack's, an object or model name that is not the selected data set's, an image no workflow
pushes, a Secret nothing creates, a ServingRuntime that is not there. Each check here walks
every object of every rendered target (so objects other changes add are covered without naming
them) and returns findings; `check_rendered` runs them all plus the admission rules
(helper/admission.py) and is what `task validate` calls.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path

from helper import admission, cluster_dataset, images, stacks
from helper.validate import Finding, object_name, pod_specs, render

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
PLACEHOLDER = "set-by-stack"
BUCKET_ENVS = {"MLP_S3_BUCKET"}
REGION_ENVS = {"MLP_S3_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"}
ENDPOINT_ENVS = {"MLP_S3_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL"}
S3_URI = re.compile(r"\bs3a?://([^/\s\"']*)")
S3_HOST = re.compile(r"\bs3[.-][a-z0-9.-]+\.(?:amazonaws\.com|ionoscloud\.com)\b")
PLATFORM_PREFIX = "platform/"


def walk(obj: object, where: str = "", parent: object = None) -> Iterator[tuple]:
    """(path, key, value, parent) for every mapping entry and list item, depth first."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            path = f"{where}.{key}" if where else str(key)
            yield path, key, value, obj
            yield from walk(value, path, obj)
    elif isinstance(obj, list):
        for i, item in enumerate(obj):
            yield f"{where}[{i}]", i, item, obj
            yield from walk(item, f"{where}[{i}]", obj)


# --- bucket and endpoint per stack -----------------------------------------------------------


# Fields that hold one stack value: (kind or None for any, path) -> stack.env key.
STACK_FIELDS = {
    ("S3Bucket", "spec.bucketName"): "MLP_S3_BUCKET",
    ("S3Connection", "spec.host"): "S3_HOST",
    ("S3Connection", "spec.port"): "S3_PORT",
    ("S3Connection", "spec.region.name"): "MLP_S3_REGION",
    (None, "metadata.annotations.serving.kserve.io/s3-endpoint"): "S3_HOST",
    (None, "metadata.annotations.serving.kserve.io/s3-region"): "MLP_S3_REGION",
}
ENV_KEYS = [
    (BUCKET_ENVS, "MLP_S3_BUCKET"),
    (REGION_ENVS, "MLP_S3_REGION"),
    (ENDPOINT_ENVS, "MLP_S3_ENDPOINT_URL"),
]


def _stack_key(kind: str, path: str, key: object, parent: object) -> str | None:
    """The stack.env key a known S3 field must equal, or None when the field is not one."""
    if key == "value" and isinstance(parent, dict) and "name" in parent:
        for names, stack_key in ENV_KEYS:
            if parent["name"] in names:
                return stack_key
    return STACK_FIELDS.get((kind, path)) or STACK_FIELDS.get((None, path))


def stack_findings(obj: dict, stack: str, values: Mapping[str, str]) -> list[str]:
    """Every S3 URI names the stack's bucket; every S3 host, endpoint and region is the stack's."""
    problems = []
    bucket, host = values["MLP_S3_BUCKET"], values["S3_HOST"]
    for path, key, value, parent in walk(obj):
        if isinstance(value, dict | list):
            continue
        text = str(value)
        stack_key = _stack_key(obj.get("kind", ""), path, key, parent)
        if stack_key and text != values[stack_key]:
            problems.append(f"{path}: '{text}' is not {stack}'s {stack_key} '{values[stack_key]}'")
            continue
        problems += [
            f"{path}: bucket '{b}' is not {stack}'s '{bucket}'"
            for b in S3_URI.findall(text)
            if b != bucket
        ]
        problems += [
            f"{path}: S3 host '{h}' is not {stack}'s '{host}'"
            for h in S3_HOST.findall(text)
            if h != host
        ]
        if PLACEHOLDER in text and not stack_key:
            problems.append(f"{path}: '{PLACEHOLDER}' was not replaced (platform/stacks)")
    return problems


def holds_s3_values(obj: dict) -> bool:
    text = str(obj)
    return bool(S3_URI.search(text) or S3_HOST.search(text) or PLACEHOLDER in text)


# --- the data set (platform/dataset) ----------------------------------------------------------


# Fields that hold one value of the selected data set: (kind, path) -> dataset.env key.
DATASET_FIELDS = {
    ("SparkApplication", "metadata.name"): "DATASET_ETL_APP",
    ("RayJob", "metadata.name"): "DATASET_TUNE_JOB",
    ("InferenceService", "metadata.name"): "DATASET_MODEL_NAME",
    (
        "NetworkPolicy",
        "spec.podSelector.matchLabels.serving.kserve.io/inferenceservice",
    ): "DATASET_MODEL_NAME",
}
DATASET_ENVS = {
    "MLP_DATASET_CONFIG": "DATASET_IMAGE_CONFIG",
    "MLP_KSERVE_ISVC_NAME": "DATASET_MODEL_NAME",
}
# Workloads that build settings (helper/settings.py), so read a data-set YAML: without
# MLP_DATASET_CONFIG they would silently load the image's default (iris).
DATASET_KINDS = {"SparkApplication", "RayJob", "InferenceService", "Job"}
ISVC_RESOURCE = "inferenceservices"


def _dataset_key(kind: str, path: str, key: object, parent: object) -> str | None:
    if key == "value" and isinstance(parent, dict) and parent.get("name") in DATASET_ENVS:
        return DATASET_ENVS[parent["name"]]
    return DATASET_FIELDS.get((kind, path))


def dataset_findings(obj: dict, values: Mapping[str, str]) -> list[str]:
    """Names, paths and keys derived from the data set are the selected one's
    (platform/dataset/dataset.env, itself derived from the YAML it names)."""
    kind, name = obj.get("kind", ""), values["DATASET_NAME"]
    problems = []
    for path, key, value, parent in walk(obj):
        if (
            key == "env"
            and kind in DATASET_KINDS
            and isinstance(value, list)
            and "MLP_DATASET_CONFIG" not in {e.get("name") for e in value}
        ):
            problems.append(f"{path}: no MLP_DATASET_CONFIG (would read the image's default)")
        if isinstance(value, dict | list):
            continue
        text = str(value)
        ds_key = _dataset_key(kind, path, key, parent)
        if ds_key and text != values[ds_key]:
            problems.append(f"{path}: '{text}' is not data set {name}'s {ds_key} {values[ds_key]}")
        elif key == "value" and isinstance(parent, dict) and parent.get("name") == "MLP_RAW_URI":
            raw_key = text.split("/", 3)[3] if text.count("/") >= 3 else ""
            if raw_key != values["DATASET_RAW_KEY"]:
                problems.append(
                    f"{path}: raw key '{raw_key}' is not data set {name}'s "
                    f"'{values['DATASET_RAW_KEY']}' (where data:upload puts it)"
                )
        elif cluster_dataset.PLACEHOLDER in text:
            problems.append(f"{path}: '{cluster_dataset.PLACEHOLDER}' was not replaced")
    for i, rule in enumerate((obj.get("rules") or []) if kind == "Role" else []):
        names = rule.get("resourceNames")
        if ISVC_RESOURCE in (rule.get("resources") or []) and names != [
            values["DATASET_MODEL_NAME"]
        ]:
            problems.append(
                f"rules[{i}].resourceNames: {names} is not data set {name}'s InferenceService "
                f"['{values['DATASET_MODEL_NAME']}']"
            )
    return problems


def holds_dataset_values(obj: dict) -> bool:
    return obj.get("kind") in DATASET_KINDS - {"Job"} or cluster_dataset.PLACEHOLDER in str(obj)


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
