"""Values a stack or the selected data set fixes, checked in every rendered object.

A stack (platform/stacks/<stack>/stack.env) fixes the bucket, the S3 host, endpoint and region;
the selected data set (platform/dataset/dataset.env) fixes the workloads' names, the
InferenceService and the raw file's key. Apart from `helper.consistency` (which runs every
cross-file check over the rendered targets) because these two are the field-by-field value
comparisons: which fields hold such a value, and what a mismatch says.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from helper import cluster_dataset

PLACEHOLDER = "set-by-stack"
BUCKET_ENVS = {"MLP_S3_BUCKET"}
REGION_ENVS = {"MLP_S3_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"}
ENDPOINT_ENVS = {"MLP_S3_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL"}
S3_URI = re.compile(r"\bs3a?://([^/\s\"']*)")
S3_HOST = re.compile(r"\bs3[.-][a-z0-9.-]+\.(?:amazonaws\.com|ionoscloud\.com)\b")


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
