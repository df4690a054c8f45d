"""Cross-file consistency over every rendered target (helper/consistency.py), and each check
shown to fail on a mutated copy of a real rendered object."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helper import consistency, images, stacks, validate
from helper.settings import REPO_ROOT

pytestmark = pytest.mark.cluster

TARGETS = validate.discover_targets()
FAKE = Path(__file__).with_name("fake_kubectl.py")
TASK = Path(sys.executable).parent / "task"


def _label(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT))


@pytest.fixture(scope="module")
def rendered() -> dict[str, tuple[Path, list[dict]]]:
    return {_label(t): (t, validate.render(t)) for t in TARGETS}


@pytest.fixture(scope="module")
def platform_objs(rendered) -> list[dict]:
    return consistency._platform_objects(rendered)


def test_all_rendered_targets_agree(rendered):
    assert [str(f) for f in consistency.check_rendered(rendered)] == []


def _obj(rendered, target: str, kind: str) -> dict:
    return copy.deepcopy(next(o for o in rendered[target][1] if o["kind"] == kind))


def _messages(rendered, platform_objs, target: str, obj: dict) -> list[str]:
    path, objs = rendered[target]
    others = [o for o in objs if validate.object_name(o) != validate.object_name(obj)]
    found = consistency.target_findings(target, path, [*others, obj], platform_objs)
    return [f"{f.check}: {f.message}" for f in found if f.obj == validate.object_name(obj)]


def _env(container: dict, name: str) -> dict:
    return next(e for e in container["env"] if e["name"] == name)


ETL_DEV = "data_platform/k8s/overlays/dev"
ML_PROD = "ml_platform/k8s/overlays/prod"
SERVE_PROD = "inference_service/k8s/overlays/prod"
PROMOTION_DEV = "inference_service/k8s/overlays/promotion-dev"


def _spark_env(name: str, value: str):
    """A mutation: the SparkApplication's env `name` set to `value`."""
    return lambda o: _env(o["spec"], name).update(value=value)


def _worker(rayjob: dict) -> dict:
    return rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"][
        "containers"
    ][0]


def _mlflow(dep: dict) -> dict:
    return dep["spec"]["template"]["spec"]["containers"][0]


MUTATIONS = {
    # stack: the old hard-coded bucket, an IONOS endpoint in the aws-dev overlay, a placeholder
    "bucket in a URI": (
        ETL_DEV,
        "SparkApplication",
        lambda o: _env(o["spec"], "MLP_LAKE_URI").update(value="s3a://ml-platform/lake"),
        "stack: spec.env[",
    ),
    "bucket env": (
        ETL_DEV,
        "SparkApplication",
        lambda o: _env(o["spec"], "MLP_S3_BUCKET").update(value="ml-platform"),
        "is not aws-dev's MLP_S3_BUCKET",
    ),
    "endpoint of another cloud": (
        ETL_DEV,
        "S3Connection",
        lambda o: o["spec"].update(host="s3.eu-central-3.ionoscloud.com"),
        "is not aws-dev's S3_HOST",
    ),
    "region": (
        ML_PROD,
        "Deployment",
        lambda o: _env(_mlflow(o), "AWS_DEFAULT_REGION").update(value="us-east-1"),
        "MLP_S3_REGION",
    ),
    "placeholder left": (
        ML_PROD,
        "Deployment",
        lambda o: _env(_mlflow(o), "MLFLOW_ARTIFACTS_DESTINATION").update(
            value="s3://set-by-stack/mlflow"
        ),
        "bucket 'set-by-stack'",
    ),
    # images
    "mutable tag": (
        ML_PROD,
        "Deployment",
        lambda o: _mlflow(o).update(image="ghcr.io/ml-platform/tune:latest"),
        "mutable",
    ),
    "old release tag": (
        ML_PROD,
        "Deployment",
        lambda o: _mlflow(o).update(image="ghcr.io/ml-platform/tune:0.1.0"),
        "mutable",
    ),
    "registry CI does not push to": (
        ML_PROD,
        "Deployment",
        lambda o: _mlflow(o).update(image="ghcr.io/someone/tune:v0.1.0"),
        "not one CI pushes",
    ),
    "pull policy Always": (
        ML_PROD,
        "Deployment",
        lambda o: _mlflow(o).update(imagePullPolicy="Always"),
        "pullPolicy Always",
    ),
    "Stackable default pull policy": (
        ETL_DEV,
        "SparkApplication",
        lambda o: o["spec"]["sparkImage"].pop("pullPolicy"),
        "Stackable defaults to Always",
    ),
    # pull secrets
    "pod without pull secret": (
        ML_PROD,
        "RayJob",
        lambda o: o["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"].pop(
            "imagePullSecrets"
        ),
        "pull-secret: workerGroupSpecs[0].imagePullSecrets",
    ),
    "spark without pull secret": (
        ETL_DEV,
        "SparkApplication",
        lambda o: o["spec"]["sparkImage"].pop("pullSecrets"),
        "pull-secret: spec.sparkImage.pullSecrets",
    ),
    # references
    "unknown secretKeyRef": (
        ML_PROD,
        "Deployment",
        lambda o: _env(_mlflow(o), "AWS_ACCESS_KEY_ID")["valueFrom"]["secretKeyRef"].update(
            name="s3-creds"
        ),
        "Secret 's3-creds'",
    ),
    "unknown serviceAccountName": (
        ML_PROD,
        "Deployment",
        lambda o: o["spec"]["template"]["spec"].update(serviceAccountName="mlflow-sa"),
        "ServiceAccount 'mlflow-sa'",
    ),
    "unknown runtime": (
        SERVE_PROD,
        "InferenceService",
        lambda o: o["spec"]["predictor"]["model"].update(runtime="kserve-mlserver"),
        "ServingRuntime 'kserve-mlserver'",
    ),
    "unknown s3connection": (
        ETL_DEV,
        "SparkApplication",
        lambda o: o["spec"]["s3connection"].update(reference="s3"),
        "S3Connection 's3'",
    ),
    "unknown secretClass": (
        ETL_DEV,
        "S3Connection",
        lambda o: o["spec"]["credentials"].update(secretClass="s3-credentials-class"),
        "SecretClass 's3-credentials-class'",
    ),
    "unknown ConfigMap": (
        ML_PROD,
        "Deployment",
        lambda o: _mlflow(o)["env"].append(
            {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "mlflow-config", "key": "x"}}}
        ),
        "ConfigMap 'mlflow-config'",
    ),
    # data set (platform/dataset): a name, key or path that is not the selected data set's
    "InferenceService not named after the model": (
        SERVE_PROD,
        "InferenceService",
        lambda o: o["metadata"].update(name="classifier"),
        "is not data set iris's DATASET_MODEL_NAME",
    ),
    "predictor policy selects another InferenceService": (
        SERVE_PROD,
        "NetworkPolicy",
        lambda o: o["spec"]["podSelector"]["matchLabels"].update(
            {"serving.kserve.io/inferenceservice": "breast-cancer-classifier"}
        ),
        "DATASET_MODEL_NAME",
    ),
    "promotion Role names another InferenceService": (
        SERVE_PROD,
        "Role",
        lambda o: o["rules"][0].update(resourceNames=["classifier"]),
        "is not data set iris's InferenceService",
    ),
    "promotion Job patches another InferenceService": (
        PROMOTION_DEV,
        "Job",
        lambda o: _env(
            o["spec"]["template"]["spec"]["containers"][0], "MLP_KSERVE_ISVC_NAME"
        ).update(value="iris"),
        "DATASET_MODEL_NAME",
    ),
    "raw key not where data:upload puts it": (
        ETL_DEV,
        "SparkApplication",
        _spark_env("MLP_RAW_URI", "s3a://mlp-dev-platform/raw/iris.data"),
        "raw key 'raw/iris.data'",
    ),
    "workload without the data set": (
        ML_PROD,
        "RayJob",
        lambda o: _worker(o).update(
            env=[e for e in _worker(o)["env"] if e["name"] != "MLP_DATASET_CONFIG"]
        ),
        "no MLP_DATASET_CONFIG",
    ),
    "another data set's YAML": (
        ETL_DEV,
        "SparkApplication",
        _spark_env("MLP_DATASET_CONFIG", "/app/data_platform/datasets/breast_cancer.yaml"),
        "DATASET_IMAGE_CONFIG",
    ),
    "data-set placeholder left": (
        ML_PROD,
        "RayJob",
        lambda o: o["metadata"].setdefault("annotations", {}).update(note="set-by-dataset"),
        "'set-by-dataset' was not replaced",
    ),
    "unknown PVC": (
        ML_PROD,
        "Deployment",
        lambda o: o["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"].update(
            claimName="db"
        ),
        "PersistentVolumeClaim 'db'",
    ),
}


@pytest.mark.parametrize("case", sorted(MUTATIONS))
def test_each_check_fails_on_a_broken_object(rendered, platform_objs, case):
    target, kind, mutate, expected = MUTATIONS[case]
    obj = _obj(rendered, target, kind)
    assert _messages(rendered, platform_objs, target, obj) == []
    mutate(obj)
    messages = _messages(rendered, platform_objs, target, obj)
    assert any(expected in m for m in messages), messages


def test_s3_values_without_a_stack_component_are_reported(tmp_path, platform_objs):
    obj = yaml.safe_load(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {u: 's3://ml-platform/x'}\n"
    )
    found = consistency.target_findings("t", tmp_path, [obj], platform_objs)
    assert [f.check for f in found] == ["stack"]


def test_data_set_objects_without_the_dataset_component_are_reported(rendered, platform_objs):
    """A target that renders a SparkApplication (or a leftover placeholder) must take the data
    set from platform/dataset, not from a hand-typed copy."""
    spark = _obj(rendered, ETL_DEV, "SparkApplication")
    found = consistency.target_findings(
        "t", REPO_ROOT / "platform/k8s/base", [spark], platform_objs
    )
    assert any(f.check == "dataset" and "lists no platform/dataset" in f.message for f in found), (
        found
    )


# --- every task-created Secret is created by the task the map names ---------------------------


def _tasks() -> set[str]:
    out = subprocess.run(
        [str(TASK), "--list-all", "--json"], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout
    return {t["name"] for t in json.loads(out)["tasks"]}


def test_every_task_named_for_a_secret_exists():
    assert set(consistency.TASK_SECRETS.values()) <= _tasks()


SECRET_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEY00",
    "AWS_SECRET_ACCESS_KEY": "example-secret-value-0",  # pragma: allowlist secret (a fake)
    "MLP_AUTH_TOKEN": "example-token-value-0",
    "GHCR_USERNAME": "someone",
    "GHCR_TOKEN": "example-ghcr-token-0",
}


@pytest.mark.parametrize(("secret", "task"), sorted(consistency.TASK_SECRETS.items()))
def test_each_secret_task_creates_its_secret_without_exposing_values(secret, task, tmp_path):
    """Run the task against a stand-in kubectl: it creates exactly that Secret, and no value
    ever appears on a command line (it goes through files in a 0700 temp dir)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
    (bin_dir / "kubectl").chmod(0o755)
    log = tmp_path / "log"
    env = {
        **os.environ,
        **SECRET_ENV,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_KUBECTL_LOG": str(log),
        "REAL_KUBECTL": shutil.which("kubectl") or "kubectl",
    }
    proc = subprocess.run(
        [str(TASK), task], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = [json.loads(line)["argv"] for line in log.read_text().splitlines()]
    creates = [c for c in calls if c[:2] == ["create", "secret"]]
    assert [c[3] for c in creates] == [secret]
    for argv in calls:
        assert not any(v in " ".join(argv) for v in SECRET_ENV.values() if len(v) > 12)


def test_the_spark_secret_is_labelled_for_the_secret_class_the_connection_names(rendered):
    """Stackable's k8sSearch backend finds the Secret by label secrets.stackable.tech/class."""
    conn = _obj(rendered, ETL_DEV, "S3Connection")
    task = (REPO_ROOT / "data_platform/k8s/Taskfile.yml").read_text()
    assert f"secrets.stackable.tech/class={conn['spec']['credentials']['secretClass']}" in task
    assert "--from-file=accessKey=" in task and "--from-file=secretKey=" in task


def test_image_scheme_covers_every_rendered_image(rendered):
    scheme = images.load_scheme()
    seen = {
        images.split_image(u.image)[0]
        for _, objs in rendered.values()
        for o in objs
        for u in images.iter_images(o)
    }
    assert seen == {scheme.repository(n) for n in scheme.names}


def test_stack_values_of_each_overlay_are_its_stacks(rendered):
    """The dev renders carry aws-dev's values and the prod renders ionos-prod's."""
    for label, (path, objs) in rendered.items():
        if "/overlays/" not in label:
            continue
        (stack,) = stacks.overlay_stacks(path)
        text = json.dumps(objs)
        assert stacks.read_stack(stack)["MLP_S3_BUCKET"] in text, label


def test_every_object_claimed_by_a_task_is_made_there():
    """TASK_OBJECTS' claims hold: the promotion's ServiceAccount is in what `serve:deploy`
    applies (every serving overlay), its candidate ConfigMap is the one the launcher creates."""
    from inference_service.promotion import job

    assert set(consistency.TASK_OBJECTS.values()) <= _tasks()
    claims = dict(consistency.TASK_OBJECTS)
    assert claims.pop(("ConfigMap", job.CANDIDATE_CONFIGMAP)) == "serve:promote:cluster"
    assert claims.pop(("ServiceAccount", "promotion")) == "serve:deploy"
    for env in ("dev", "prod"):
        objs = validate.render(REPO_ROOT / "inference_service/k8s/overlays" / env)
        assert "ServiceAccount/promotion" in {validate.object_name(o) for o in objs}
    assert claims == {}
