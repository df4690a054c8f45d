"""The cluster tasks and the prediction script, run for real against a stand-in kubectl.

Nothing can reach a cluster here, so `kubectl` is tests/cluster/fake_kubectl.py: it logs every
call, renders with the real kubectl and answers `get` calls from a script. The tasks run in a
copy of the repository (they write files such as model.env) with the project's environment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helper.settings import REPO_ROOT
from tests.cluster.repo_copy import copy_repo

pytestmark = pytest.mark.cluster

FAKE = Path(__file__).with_name("fake_kubectl.py")
TASK = Path(sys.executable).parent / "task"
NS = "ml-platform"


@pytest.fixture
def kube(tmp_path):
    """A PATH with the fake kubectl first; returns (env, read_log, set_script)."""
    real = shutil.which("kubectl")
    assert real, "the real kubectl renders the overlays"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "kubectl"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
    shim.chmod(0o755)
    log = tmp_path / "kubectl.log"
    log.touch()
    skip = {"MLP_AUTH_TOKEN", "ENV", "STACK", "DATASET", "MLP_DATASET_CONFIG"}
    env = {k: v for k, v in os.environ.items() if k not in skip} | {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "REAL_KUBECTL": real,
        "FAKE_KUBECTL_LOG": str(log),
        "UV_NO_SYNC": "1",
        "UV_PROJECT_ENVIRONMENT": str(REPO_ROOT / ".venv"),
    }

    def calls() -> list[dict]:
        return [json.loads(line) for line in log.read_text().splitlines()]

    def script(answers: dict[str, str] | None = None, fail: list[str] | None = None) -> None:
        env["FAKE_KUBECTL_SCRIPT"] = json.dumps({"answers": answers or {}, "fail": fail or []})

    script()
    return env, calls, script


@pytest.fixture
def repo_copy(tmp_path) -> Path:
    """Tasks may write into the repository (model.env): they get a copy."""
    return copy_repo(tmp_path / "repo")


def run_task(root: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(TASK), "-d", str(root), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def verbs(calls: list[dict]) -> list[str]:
    return [" ".join(c["argv"][:3]) for c in calls]


# --- waits end on failure states -------------------------------------------------------------

ETL_STATUS = f"get sparkapplication/iris-etl -n {NS} -o jsonpath={{.status.phase}}"
TUNE_STATUS = (
    f"get rayjob/iris-tune -n {NS} -o jsonpath="
    "{.status.jobDeploymentStatus}/{.status.jobStatus}"
)
TUNE_MESSAGE = f"get rayjob/iris-tune -n {NS} -o jsonpath={{.status.reason}} {{.status.message}}"
SHA_TAG = "sha-" + "0" * 40


@pytest.mark.parametrize(
    ("task", "answers", "expect"),
    [
        ("data:etl:cluster", {ETL_STATUS: "Failed"}, ["status Failed", "task data:logs"]),
        (
            "ml:tune:cluster",
            {TUNE_STATUS: "Failed/FAILED", TUNE_MESSAGE: "DeadlineExceeded too slow"},
            ["status Failed/FAILED", "DeadlineExceeded too slow", "job/iris-tune"],
        ),
    ],
    ids=["etl", "tune"],
)
def test_cluster_waits_stop_on_a_failed_job_and_say_where_to_look(
    kube, repo_copy, task, answers, expect
):
    env, calls, script = kube
    script(answers)
    started = time.monotonic()
    proc = run_task(repo_copy, {**env, "IMAGE_TAG": SHA_TAG}, task, "ENV=dev")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    for needle in expect:
        assert needle in out, out
    # it polled the status rather than blocking in `kubectl wait` until the timeout
    assert not any(c["argv"][0] == "wait" for c in calls()), verbs(calls())
    assert time.monotonic() - started < 120


def test_etl_wait_succeeds_on_succeeded_and_applies_the_commit_images(kube, repo_copy):
    env, calls, script = kube
    script({ETL_STATUS: "Succeeded"})
    proc = run_task(repo_copy, {**env, "IMAGE_TAG": SHA_TAG}, "data:etl:cluster", "ENV=dev")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    applied = next(c["stdin"] for c in calls() if c["argv"][:1] == ["apply"])
    assert f"ghcr.io/ml-platform/etl:{SHA_TAG}" in applied
    assert "mlp-dev-platform" in applied and "ml-platform/etl:v" not in applied


# --- serve:deploy and the bearer-token Secret ------------------------------------------------

ISVC_READY = f"wait inferenceservice/iris-classifier -n {NS} --for=condition=Ready --timeout=10m"
PIN = "MODEL_NAME=iris-classifier\nMODEL_VERSION=3\nSTORAGE_URI=s3://{bucket}/mlflow/1/models/m-3/artifacts\n"


def _pin(root: Path, bucket: str) -> None:
    (root / "ml_platform/best_model_artifacts/.env.best_run").write_text(PIN.format(bucket=bucket))


def test_prod_deploy_without_token_or_secret_fails_before_applying(kube, repo_copy):
    env, calls, script = kube
    script({ISVC_READY: ""}, fail=[f"get secret predictor-auth -n {NS}"])
    _pin(repo_copy, "mlp-prod-platform")
    proc = run_task(repo_copy, env, "serve:deploy", "ENV=prod")
    assert proc.returncode != 0
    assert "requires the Secret predictor-auth" in proc.stdout + proc.stderr
    assert not any(c["argv"][0] == "apply" for c in calls())


def test_prod_deploy_creates_the_token_secret_from_the_environment_first(kube, repo_copy):
    env, calls, script = kube
    script({ISVC_READY: ""}, fail=[f"get secret predictor-auth -n {NS}"])
    _pin(repo_copy, "mlp-prod-platform")
    token = "tok-" + "x" * 20
    proc = run_task(repo_copy, {**env, "MLP_AUTH_TOKEN": token}, "serve:deploy", "ENV=prod")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seen = verbs(calls())
    created = seen.index("create secret generic")
    assert calls()[created]["argv"][3] == "predictor-auth"
    assert created < seen.index("apply -f -")
    assert all(token not in " ".join(c["argv"]) for c in calls())


def test_deploy_refuses_a_model_pinned_in_another_stacks_bucket(kube, repo_copy):
    env, calls, script = kube
    script({ISVC_READY: ""})
    _pin(repo_copy, "mlp-dev-platform")
    proc = run_task(repo_copy, {**env, "MLP_AUTH_TOKEN": "t"}, "serve:deploy", "ENV=prod")
    assert proc.returncode != 0
    assert "outside the bucket" in proc.stdout + proc.stderr
    assert not any(c["argv"][0] == "apply" for c in calls())


def test_serve_secret_annotates_the_endpoint_of_the_env_stack(kube, repo_copy):
    env, calls, _ = kube
    keys = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "not-a-real-key"}
    proc = run_task(repo_copy, {**env, **keys}, "serve:secret", "ENV=dev")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    annotate = next(c["argv"] for c in calls() if c["argv"][0] == "annotate")
    assert "serving.kserve.io/s3-endpoint=s3.eu-central-1.amazonaws.com" in annotate
    assert "serving.kserve.io/s3-region=eu-central-1" in annotate


# --- the data set the tasks deploy: the one platform:dataset selected ------------------------

BC_ETL_STATUS = ETL_STATUS.replace("iris-etl", "breast-cancer-etl")
BC_TUNE_STATUS = TUNE_STATUS.replace("iris-tune", "breast-cancer-tune")


def test_cluster_tasks_follow_the_selected_data_set(kube, repo_copy):
    env, calls, script = kube
    proc = run_task(repo_copy, env, "platform:dataset", "DATASET=breast_cancer")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "DATASET_NAME=breast_cancer" in (repo_copy / "platform/dataset/dataset.env").read_text()
    script({BC_ETL_STATUS: "Succeeded", BC_TUNE_STATUS: "Failed/FAILED"})
    tag = {**env, "IMAGE_TAG": SHA_TAG}
    etl = run_task(repo_copy, tag, "data:etl:cluster", "ENV=dev", "DATASET=breast_cancer")
    assert etl.returncode == 0, etl.stdout + etl.stderr
    tune = run_task(repo_copy, tag, "ml:tune:cluster", "ENV=dev")
    assert tune.returncode != 0 and "job/breast-cancer-tune" in tune.stdout + tune.stderr
    seen = [" ".join(c["argv"]) for c in calls()]
    assert any(c.startswith("delete sparkapplication breast-cancer-etl ") for c in seen), seen
    assert any(c.startswith("delete rayjob breast-cancer-tune ") for c in seen), seen
    applied = "".join(c["stdin"] for c in calls() if c["argv"][:1] == ["apply"])
    assert "s3a://mlp-dev-platform/raw/breast_cancer/breast_cancer.csv" in applied
    assert "/app/data_platform/datasets/breast_cancer.yaml" in applied
    assert "iris" not in applied


def test_a_cluster_task_refuses_a_data_set_that_is_not_selected(kube, repo_copy):
    env, calls, script = kube
    script({ETL_STATUS: "Succeeded"})
    proc = run_task(repo_copy, env, "data:etl:cluster", "ENV=dev", "DATASET=breast_cancer")
    assert proc.returncode != 0
    assert "task platform:dataset DATASET=breast_cancer" in proc.stdout + proc.stderr
    assert not any(c["argv"][0] in {"apply", "delete"} for c in calls())


def test_deploy_refuses_a_model_of_another_data_set(kube, repo_copy):
    """The InferenceService serves the model under its own name: an iris pin cannot be served
    as breast-cancer-classifier."""
    env, calls, script = kube
    script({ISVC_READY.replace("iris-classifier", "breast-cancer-classifier"): ""})
    assert run_task(repo_copy, env, "platform:dataset", "DATASET=breast_cancer").returncode == 0
    _pin(repo_copy, "mlp-dev-platform")
    proc = run_task(repo_copy, env, "serve:deploy", "ENV=dev")
    assert proc.returncode != 0
    assert "is not breast-cancer-classifier" in proc.stdout + proc.stderr
    assert not any(c["argv"][0] == "apply" for c in calls())


# --- the prediction script finds the Kourier ingress -----------------------------------------


def test_prediction_cluster_mode_finds_the_kourier_ingress(kube, httpserver, tmp_path):
    env, calls, script = kube
    host = "iris-classifier.ml-platform.ml.example.com"
    lb = "{.status.loadBalancer.ingress[0].ip}{.status.loadBalancer.ingress[0].hostname}"
    script(
        {
            f"-n kourier-system get service kourier -o jsonpath={lb}": "127.0.0.1",
            "-n kourier-system get service kourier -o jsonpath="
            '{.spec.ports[?(@.name=="http2")].port}': str(httpserver.port),
            f"-n {NS} get inferenceservice iris-classifier -o jsonpath={{.status.url}}": (
                f"http://{host}"
            ),
        }
    )
    reply = {"outputs": [{"name": "predict", "data": [0]}, {"name": "label", "data": ["a"]}]}
    httpserver.expect_request(
        "/v2/models/iris-classifier/infer", method="POST", headers={"Host": host}
    ).respond_with_json(reply, headers={"x-model-version": "3"})
    body = tmp_path / "input.json"
    body.write_text(
        json.dumps({"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP64", "data": [1.0]}]})
    )
    proc = subprocess.run(
        [str(REPO_ROOT / "inference_service" / "prediction"), "--cluster"],
        env={**env, "INPUT": str(body)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "row 0: class=0 label=a" in proc.stdout
    assert "model_version=3" in proc.stdout
