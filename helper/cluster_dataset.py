"""The data set the cluster overlays deploy: one generated `platform/dataset/dataset.env`.

Locally a data set is one YAML (`MLP_DATASET_CONFIG`, helper/dataset.py). The cluster takes
the same file: `task platform:dataset DATASET=<name>` (`select` below) derives from
data_platform/datasets/<name>.yaml every value a manifest needs and writes them to
platform/dataset/dataset.env; the kustomize Component beside it (a build-time ConfigMap
`dataset` plus replacements) writes them into every overlay that lists it. Nothing else names
the data set, so the ETL, the RayJob, the InferenceService and the promotion Job cannot
disagree. The file is committed like a stack's stack.env: promote.yml renders the promotion
Job from the commit, so the commit must say which data set it serves. Tests require the
committed file to equal what the YAML it names derives.

Names: the InferenceService is called after the registered model (KServe serves the model
under the InferenceService's name, `--model_name={{.Name}}`, and the local path serves it under
the registered model name, so both paths answer on /v2/models/<registered model>/infer); the
SparkApplication and the RayJob are `<name>-etl` / `<name>-tune` (`_` -> `-`). For iris these
are today's names: iris-classifier, iris-etl, iris-tune.

    python -m helper.cluster_dataset select breast_cancer   # or a path to a data-set YAML
    python -m helper.cluster_dataset get DATASET_MODEL_NAME
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping
from pathlib import Path

import yaml

from helper.atomic import atomic_write
from helper.dataset import DatasetError, load_dataset_spec
from helper.errors import PlatformError, run_cli
from helper.stacks import parse_env

REPO_ROOT = Path(__file__).resolve().parent.parent
COMPONENT_DIR = Path("platform") / "dataset"
ENV_NAME = "dataset.env"
DATASETS_DIR = Path("data_platform") / "datasets"
# Every image copies the repository's data_platform/ to /app/data_platform/ (the Dockerfiles).
IMAGE_ROOT = "/app"
IMAGE_DIR = "data_platform"
PLACEHOLDER = "set-by-dataset"
# KServe: an InferenceService name is a DNS-1035 label, and `<name>-predictor-<revision>`
# (Knative's service and revision names) must stay within 63 characters.
ISVC_NAME = re.compile(r"^[a-z]([a-z0-9-]{0,43}[a-z0-9])?$")
K8S_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,50}[a-z0-9])?$")  # DNS-1123, room for pod suffixes
HEADER = (
    "# Written by `task platform:dataset DATASET={name}` from {source}\n"
    "# (helper/cluster_dataset.py). Not a secret. Do not edit: change the YAML or select another\n"
    "# data set and regenerate (tests compare the two). `. platform/dataset/dataset.env` also\n"
    "# points local clients (data:upload, ml:register) at the same data set.\n"
)


class ClusterDatasetError(PlatformError, ValueError):
    """The data set cannot be deployed as named, or the generated file is missing or stale."""


def yaml_for(choice: str | Path, root: Path = REPO_ROOT) -> Path:
    """A data-set name (data_platform/datasets/<name>.yaml) or a path to a YAML."""
    text = str(choice)
    path = Path(text) if text.endswith((".yaml", ".yml")) else root / DATASETS_DIR / f"{text}.yaml"
    path = path if path.is_absolute() else (root / path)
    if not path.is_file():
        known = sorted(p.stem for p in (root / DATASETS_DIR).glob("*.yaml"))
        raise ClusterDatasetError(f"no data set '{choice}' (no {path}; known: {known})")
    return path.resolve()


def cluster_values(yaml_path: Path, root: Path = REPO_ROOT) -> dict[str, str]:
    """What the manifests need of one data-set YAML, derived as helper/dataset.py does."""
    try:
        spec = load_dataset_spec(yaml_path)
    except DatasetError as exc:
        raise ClusterDatasetError(str(exc)) from None
    try:
        in_image = yaml_path.resolve().relative_to((root / IMAGE_DIR).resolve())
    except ValueError:
        raise ClusterDatasetError(
            f"{yaml_path}: the images copy only {IMAGE_DIR}/ (to {IMAGE_ROOT}/{IMAGE_DIR}/); "
            f"put the data-set YAML under {DATASETS_DIR}/"
        ) from None
    slug = spec.name.replace("_", "-")
    values = {
        "DATASET_NAME": spec.name,
        # local clients, from the repository root; the images, the same file under /app
        "MLP_DATASET_CONFIG": yaml_path.resolve().relative_to(root.resolve()).as_posix(),
        "DATASET_IMAGE_CONFIG": f"{IMAGE_ROOT}/{IMAGE_DIR}/{in_image.as_posix()}",
        "DATASET_RAW_KEY": spec.raw_key,  # data_platform/upload.py puts the file there
        "DATASET_MODEL_NAME": spec.default_model_name,  # also the InferenceService's name
        "DATASET_ETL_APP": f"{slug}-etl",
        "DATASET_TUNE_JOB": f"{slug}-tune",
    }
    problems = []
    if not ISVC_NAME.match(values["DATASET_MODEL_NAME"]):
        problems.append(
            f"registered model name '{values['DATASET_MODEL_NAME']}' cannot name an "
            "InferenceService (a letter first, [a-z0-9-], no trailing '-', at most 45 characters)"
        )
    problems += [
        f"{key} '{values[key]}' is not a Kubernetes name ([a-z0-9-], at most 52 characters)"
        for key in ("DATASET_ETL_APP", "DATASET_TUNE_JOB")
        if not K8S_NAME.match(values[key])
    ]
    if problems:
        raise ClusterDatasetError(f"{yaml_path}: {'; '.join(problems)}")
    return values


def format_env(values: Mapping[str, str]) -> str:
    header = HEADER.format(name=values["DATASET_NAME"], source=values["MLP_DATASET_CONFIG"])
    return header + "".join(f"{k}={v}\n" for k, v in values.items())


def env_file(root: Path = REPO_ROOT) -> Path:
    return root / COMPONENT_DIR / ENV_NAME


def read_selected(root: Path = REPO_ROOT) -> dict[str, str]:
    path = env_file(root)
    if not path.is_file():
        raise ClusterDatasetError(f"no {path}: run `task platform:dataset DATASET=iris`")
    return parse_env(path.read_text(encoding="utf-8"))


def expected_env(root: Path = REPO_ROOT) -> str:
    """The file the committed selection should be: regenerated from the YAML it names."""
    selected = read_selected(root)
    source = selected.get("MLP_DATASET_CONFIG")
    if not source:
        raise ClusterDatasetError(f"{env_file(root)} names no MLP_DATASET_CONFIG")
    return format_env(cluster_values(yaml_for(source, root), root))


def select(choice: str | Path, root: Path = REPO_ROOT) -> Path:
    values = cluster_values(yaml_for(choice, root), root)
    return atomic_write(env_file(root), format_env(values))


def lists_dataset(overlay: Path, root: Path = REPO_ROOT) -> bool:
    """Whether an overlay (or an overlay it builds on) lists the platform/dataset Component."""
    doc = yaml.safe_load((overlay / "kustomization.yaml").read_text(encoding="utf-8")) or {}
    component = (root / COMPONENT_DIR).resolve()
    if any((overlay / c).resolve() == component for c in doc.get("components") or []):
        return True
    bases = [(overlay / r).resolve() for r in doc.get("resources") or []]
    return any(
        lists_dataset(b, root)
        for b in bases
        if (b / "kustomization.yaml").is_file() and "overlays" in b.parts
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sel = sub.add_parser("select", help="write platform/dataset/dataset.env from a data-set YAML")
    sel.add_argument("dataset", help="a name under data_platform/datasets/ or a YAML path")
    get = sub.add_parser("get", help="print one value of the selected data set")
    get.add_argument("key")
    sub.add_parser("check", help="exit 1 when dataset.env is not what its YAML derives")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "select":
            path = select(args.dataset)
            values = read_selected()
            print(
                f"cluster data set: {values['DATASET_NAME']} ({path.relative_to(REPO_ROOT)}; "
                f"InferenceService {values['DATASET_MODEL_NAME']}): commit it with the run it "
                "serves"
            )
        elif args.cmd == "get":
            values = read_selected()
            if args.key not in values:
                raise ClusterDatasetError(f"{ENV_NAME} has no {args.key} (have {sorted(values)})")
            print(values[args.key])
        else:
            if env_file().read_text(encoding="utf-8") != expected_env():
                raise ClusterDatasetError(
                    f"{COMPONENT_DIR / ENV_NAME} is stale: run `task platform:dataset "
                    f"DATASET={read_selected()['DATASET_NAME']}`"
                )
    except (ClusterDatasetError, OSError) as exc:
        print(f"cluster_dataset: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_cli(main)
