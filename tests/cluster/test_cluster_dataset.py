"""The cluster overlays take the data set the way the local path does: from one YAML.

`platform/dataset/dataset.env` is generated from a data-set YAML (helper/cluster_dataset.py)
and fed into every overlay by the platform/dataset Component. Selecting each data set of
data_platform/datasets/ in a copy of the repository and rendering every overlay must give the
names and paths the rest of the code derives from that YAML on its own (helper/dataset.py,
helper/settings.py, data_platform/upload.py), with every cross-file check passing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from data_platform import upload
from helper import cluster_dataset, consistency, image_contract, stacks, validate
from helper.dataset import load_dataset_spec
from helper.settings import REPO_ROOT, Settings
from tests.cluster.repo_copy import copy_repo

pytestmark = pytest.mark.cluster

DATASETS = sorted(p.stem for p in (REPO_ROOT / "data_platform/datasets").glob("*.yaml"))
DOCKERFILES = ("data_platform", "ml_platform", "inference_service")
AREA_OVERLAYS = sorted(
    str(p.parent.relative_to(REPO_ROOT))
    for p in REPO_ROOT.glob("*/k8s/overlays/*/kustomization.yaml")
)


def test_the_committed_selection_is_what_its_yaml_derives():
    committed = cluster_dataset.env_file().read_text(encoding="utf-8")
    assert committed == cluster_dataset.expected_env(), (
        "platform/dataset/dataset.env is stale: run `task platform:dataset DATASET=…`"
    )


def test_the_default_cluster_data_set_is_iris_with_todays_names():
    values = cluster_dataset.read_selected()
    assert values["DATASET_NAME"] == "iris"
    assert (values["DATASET_ETL_APP"], values["DATASET_TUNE_JOB"]) == ("iris-etl", "iris-tune")
    assert values["DATASET_MODEL_NAME"] == "iris-classifier"
    assert values["DATASET_RAW_KEY"] == "raw/iris/iris.data"


@pytest.mark.parametrize("overlay", AREA_OVERLAYS)
def test_every_area_overlay_lists_the_dataset_component(overlay):
    assert cluster_dataset.lists_dataset(REPO_ROOT / overlay), overlay


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_image_carries_each_data_set_yaml_where_the_manifests_point(dataset):
    """DATASET_IMAGE_CONFIG is a file of every image (COPY list and .dockerignore applied)."""
    values = cluster_dataset.cluster_values(cluster_dataset.yaml_for(dataset))
    for area in DOCKERFILES:
        files = image_contract.image_files(
            image_contract.parse_dockerfile(REPO_ROOT / area / "Dockerfile")
        )
        assert files.get(values["DATASET_IMAGE_CONFIG"]) == REPO_ROOT / values["MLP_DATASET_CONFIG"]


# --- each data set, selected and rendered ---------------------------------------------------


def _one(objs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [o for o in objs if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, [validate.object_name(o) for o in objs]
    return found[0]


def _env(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


@pytest.fixture(scope="module", params=DATASETS)
def selected(request, tmp_path_factory):
    """(data set, its YAML, {overlay: rendered objects}) in a copy with that data set selected
    through the task a user runs."""
    name = request.param
    root = copy_repo(tmp_path_factory.mktemp(f"repo-{name}"))
    proc = subprocess.run(
        [sys.executable, "-m", "helper.cluster_dataset", "select", name],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    renders = {t: (root / t, validate.render(root / t)) for t in AREA_OVERLAYS}
    return name, REPO_ROOT / "data_platform/datasets" / f"{name}.yaml", root, renders


def test_a_selected_data_set_passes_every_cross_file_check(selected):
    _, _, root, renders = selected
    rendered = {label: (path, objs) for label, (path, objs) in renders.items()}
    rendered |= {
        str(t.relative_to(root)): (t, validate.render(t))
        for t in sorted(root.glob("platform/k8s/*/"))
        if (t / "kustomization.yaml").is_file()
    }
    assert [str(f) for f in consistency.check_rendered(rendered)] == []


def test_names_and_paths_are_what_the_code_derives_from_the_yaml(selected):
    """Every field is compared with what the code that runs derives from the YAML itself:
    the settings (registered model name, which KServe serves under the InferenceService's
    name), data:upload's object key, the YAML's path in the images."""
    name, yaml_path, _, renders = selected
    spec = load_dataset_spec(yaml_path)
    settings = Settings(dataset_config=yaml_path)
    model = settings.registered_model_name
    in_image = "/app/" + str(yaml_path.relative_to(REPO_ROOT))
    slug = spec.name.replace("_", "-")

    for env in ("dev", "prod"):
        bucket = stacks.read_stack(stacks.stack_for_env(env))["MLP_S3_BUCKET"]
        spark = _one(renders[f"data_platform/k8s/overlays/{env}"][1], "SparkApplication")
        assert spark["metadata"]["name"] == f"{slug}-etl"
        spark_env = _env(spark["spec"])
        assert spark_env["MLP_RAW_URI"] == f"s3a://{bucket}/{upload.raw_key(settings)}"
        assert spark_env["MLP_DATASET_CONFIG"] == in_image

        ray = _one(renders[f"ml_platform/k8s/overlays/{env}"][1], "RayJob")
        assert ray["metadata"]["name"] == f"{slug}-tune"
        cluster = ray["spec"]["rayClusterSpec"]
        pods = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
        for pod in pods:
            (container,) = pod["template"]["spec"]["containers"]
            assert _env(container)["MLP_DATASET_CONFIG"] == in_image

        serving = renders[f"inference_service/k8s/overlays/{env}"][1]
        isvc = _one(serving, "InferenceService")
        assert isvc["metadata"]["name"] == model
        assert _env(isvc["spec"]["predictor"]["model"])["MLP_DATASET_CONFIG"] == in_image
        policy = _one(serving, "NetworkPolicy", "predictor-ingress")
        assert policy["spec"]["podSelector"]["matchLabels"] == {
            "serving.kserve.io/inferenceservice": model
        }
        assert _one(serving, "Role", "promotion")["rules"][0]["resourceNames"] == [model]

        job = _one(renders[f"inference_service/k8s/overlays/promotion-{env}"][1], "Job")
        job_env = _env(job["spec"]["template"]["spec"]["containers"][0])
        assert job_env["MLP_KSERVE_ISVC_NAME"] == model
        assert job_env["MLP_DATASET_CONFIG"] == in_image
        # the Job's settings (the image's path mapped back to the repository) agree by default
        local = REPO_ROOT / job_env["MLP_DATASET_CONFIG"].removeprefix("/app/")
        assert Settings(dataset_config=local).kserve_isvc_name == model
    assert name == spec.name


def test_the_overlays_patches_still_reach_the_renamed_objects(selected):
    """Patches select by kind, so they apply whatever the data set names the objects."""
    _, _, _, renders = selected
    assert (
        _one(renders["data_platform/k8s/overlays/prod"][1], "SparkApplication")["spec"]["executor"][
            "replicas"
        ]
        == 2
    )
    ray_dev = _one(renders["ml_platform/k8s/overlays/dev"][1], "RayJob")
    assert ray_dev["spec"]["entrypoint"].endswith("--smoke")
    assert (
        _one(renders["inference_service/k8s/overlays/dev"][1], "InferenceService")["spec"][
            "predictor"
        ]["minReplicas"]
        == 0
    )
    prod = _one(renders["inference_service/k8s/overlays/prod"][1], "InferenceService")
    assert prod["spec"]["predictor"]["minReplicas"] == 2
    assert [e["name"] for e in prod["spec"]["predictor"]["model"]["env"]] == [
        "MLP_DATASET_CONFIG",
        "MLP_AUTH_TOKEN",
    ]
    canary = _one(renders["inference_service/k8s/overlays/canary"][1], "InferenceService")
    assert canary["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert canary["metadata"]["name"] == prod["metadata"]["name"]


# --- what cannot be deployed is named --------------------------------------------------------


def _yaml(tmp_path: Path, name: str, **extra: str) -> Path:
    root = tmp_path / "repo"
    (root / "data_platform/datasets").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / "data_platform/datasets/iris.yaml", root / "data_platform/datasets")
    text = (root / "data_platform/datasets/iris.yaml").read_text(encoding="utf-8")
    text = text.replace("name: iris\n", f"name: {name}\n").replace(
        "registered_model_name: iris-classifier\n",
        "".join(f"{k}: {v}\n" for k, v in extra.items()),
    )
    path = root / "data_platform/datasets" / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_model_name_that_cannot_name_an_inference_service_is_refused(tmp_path):
    path = _yaml(tmp_path, "wine", registered_model_name="7-wine")
    with pytest.raises(cluster_dataset.ClusterDatasetError, match="cannot name an InferenceS"):
        cluster_dataset.cluster_values(path, tmp_path / "repo")


def test_a_yaml_outside_what_the_images_copy_is_refused(tmp_path):
    path = _yaml(tmp_path, "wine")
    outside = tmp_path / "repo" / "wine.yaml"
    shutil.move(path, outside)
    with pytest.raises(cluster_dataset.ClusterDatasetError, match="images copy only"):
        cluster_dataset.cluster_values(outside, tmp_path / "repo")


def test_an_unknown_data_set_names_the_known_ones():
    with pytest.raises(cluster_dataset.ClusterDatasetError, match="breast_cancer"):
        cluster_dataset.yaml_for("wine")
