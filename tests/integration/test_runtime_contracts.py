"""Each image's entry point, run the way its rendered manifest runs it, against the local stack.

No Docker here, so the pod is rebuilt from what decides whether it starts: the manifest's env
(MLflow/S3 endpoints pointed at the local stack, Secrets filled with local values), the
manifest's uid (setpriv; we are root), a read-only copy of exactly the files the Dockerfile
COPYs as the working directory, and writable directories only where the pod mounts an
emptyDir (see helper/image_contract.py, helper/image_sandbox.py). One test per image:

- RayJob (tune image): the entrypoint with the dev overlay's smoke budget, a local Ray;
- SparkApplication (etl image): the same job file under local Spark; s3a:// URIs are mapped to
  a local directory (local Spark has no hadoop-aws jar), as `task data:upload` would fill it;
- ServingRuntime + InferenceService (predictor image): the runtime's command and args with a
  model dir at /mnt/models and the prod overlay's bearer token;
- promotion Job (predictor image): its command against the local MLflow and S3 lake, a real
  Prometheus standing in for the cluster's (scraping a predictor's metrics module) and a fake
  Kubernetes API for the InferenceService (kubeconfig fallback outside a pod).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import time
import uuid
from pathlib import Path

import boto3
import numpy as np
import pytest
import requests
import yaml

from data_platform import lake
from helper import image_contract as ic
from helper import validate
from helper.image_sandbox import Sandbox
from helper.processes import free_port
from helper.settings import REPO_ROOT, Settings
from tests.integration.test_tune_pipeline import write_tiny_lake

pytestmark = pytest.mark.integration

TOKEN = "contract-test-token"  # pragma: allowlist secret

CLASSES = ["Iris-setosa", "Iris-versicolor", "Iris-virginica"]


def render(overlay: str) -> list[dict]:
    return validate.render(REPO_ROOT / overlay)


def one(objs: list[dict], kind: str) -> dict:
    (found,) = [o for o in objs if o["kind"] == kind]
    return found


def tail(proc) -> str:
    return f"rc={proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-6000:]}"


@pytest.fixture
def sandbox():
    made: list[Sandbox] = []

    def build(*args, **kw) -> Sandbox:
        made.append(Sandbox.build(*args, **kw))
        return made[-1]

    yield build
    for box in made:
        box.remove()


# A predictor revision's metrics as the cluster Prometheus scrapes them: the real module, served
# by prometheus_client (what kserve's /metrics serves), so the analysis preflight finds them.
EXPORTER = """
import sys, time
from prometheus_client import start_http_server
from inference_service import metrics
metrics.init_series("iris-classifier", "iris-classifier-predictor-00001", ["0", "1", "2"])
start_http_server(int(sys.argv[1]), addr="127.0.0.1")
while True:
    time.sleep(60)
"""


@pytest.fixture
def cluster_prometheus(tmp_path):
    """The URL of a real Prometheus (the local one, as `serve:up` runs it) scraping a revision."""
    import subprocess
    import sys

    from helper.processes import http_ok
    from helper.settings import load_settings
    from inference_service import prometheus_local

    port = free_port()
    exporter = subprocess.Popen(
        [sys.executable, "-c", EXPORTER, str(port)], cwd=REPO_ROOT, start_new_session=True
    )
    settings = load_settings(
        state_dir=tmp_path / "prom-state",
        prometheus_port=free_port(),
        predictor_ports=(port, free_port()),
        proxy_stats_port=free_port(),
    )
    try:
        deadline = time.monotonic() + 30
        while not http_ok(f"http://127.0.0.1:{port}/metrics") and time.monotonic() < deadline:
            time.sleep(0.2)
        prometheus_local.start(settings)
        yield f"http://127.0.0.1:{settings.prometheus_port}"
    finally:
        prometheus_local.stop(settings)
        os.killpg(exporter.pid, signal.SIGTERM)
        exporter.wait(timeout=10)


def _ensure_bucket(settings: Settings, bucket: str) -> None:
    s3 = boto3.client("s3", **settings.s3_client_kwargs())
    if bucket not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        s3.create_bucket(Bucket=bucket)


def seed_lake(settings: Settings, lake_uri: str) -> dict:
    """A published iris version at `lake_uri` on the local S3 (bucket created if missing)."""
    _ensure_bucket(settings, lake_uri.split("://", 1)[1].split("/", 1)[0])
    return write_tiny_lake(lake_uri, settings=settings)


# --- tune image: the RayJob ----------------------------------------------------------------


@pytest.mark.slow
def test_rayjob_entrypoint_runs_as_the_head_pod_runs_it(local_stack, sandbox):
    rayjob = one(render("ml_platform/k8s/overlays/dev"), "RayJob")
    head = rayjob["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    c = ic.container(head)
    uid, gid = ic.run_as(head, c)
    assert uid and uid != 0
    box = sandbox(
        REPO_ROOT / "ml_platform/Dockerfile", uid, gid, writable=ic.emptydir_mounts(head, c)
    )
    env = box.env(
        ic.point_at_local_stack(ic.container_env(c, ic.local_secrets(local_stack)), local_stack)
    )
    seed_lake(local_stack, env["MLP_LAKE_URI"])
    entrypoint = shlex.split(rayjob["spec"]["entrypoint"])
    assert "--smoke" in entrypoint  # the dev overlay's budget
    proc = box.run(entrypoint, env, timeout=1200)
    assert proc.returncode == 0, tail(proc)
    assert "parent run" in proc.stdout
    state = Path(env.get("MLP_STATE_DIR", box.host("/app/.local")))
    assert (state / "ray_results").is_dir()


# --- etl image: the SparkApplication -------------------------------------------------------


@pytest.mark.slow
def test_etl_job_file_runs_as_the_spark_application_runs_it(local_stack, sandbox):
    app = one(render("data_platform/k8s/overlays/dev"), "SparkApplication")
    dockerfile = REPO_ROOT / "data_platform/Dockerfile"
    user = ic.parse_dockerfile(dockerfile).user
    assert user and user.isdigit() and user != "0"
    # The base image's HOME (/stackable) and /tmp are the writable places (root not read-only:
    # the SparkApplication's waiver); /app is root's, so read-only for this user.
    box = sandbox(dockerfile, int(user), int(user), writable=["/stackable", "/tmp"])
    env = ic.container_env({"env": app["spec"]["env"]}, {})
    bucket_dirs: dict[str, Path] = {}

    def local_path(uri: str) -> str:
        if not uri.startswith(("s3a://", "s3://")):
            return uri
        bucket, _, key = uri.split("://", 1)[1].partition("/")
        root = bucket_dirs.setdefault(bucket, box.directory(f"bucket-{bucket}"))
        return str(root / key)

    on_host = {k: local_path(v) for k, v in env.items() if v.startswith(("s3a://", "s3://"))}
    raw = Path(on_host["MLP_RAW_URI"])
    raw.parent.mkdir(parents=True)
    raw.write_bytes((REPO_ROOT / "data/iris.data").read_bytes())
    env = box.env({"HOME": "/stackable", **env, "SPARK_LOCAL_IP": "127.0.0.1"}, on_host)
    main_file = app["spec"]["mainApplicationFile"].removeprefix("local://")
    proc = box.run(["python", main_file], env, timeout=900)
    assert proc.returncode == 0, tail(proc)
    manifest = lake.latest_manifest(env["MLP_LAKE_URI"], "iris")
    assert (manifest["rows_in"], manifest["rows_out"]) == (150, 150)


# --- predictor image: ServingRuntime + InferenceService --------------------------------------


def _wait_ready(url: str, proc, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "predictor exited"
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} not ready in {timeout_s} s")


def test_predictor_serves_as_the_serving_runtime_runs_it(local_stack, sandbox, tmp_path):
    from inference_service.example_models import save_iris_models

    objs = render("inference_service/k8s/overlays/prod")
    runtime, isvc = one(objs, "ServingRuntime"), one(objs, "InferenceService")
    c = ic.container(runtime["spec"])
    pod_sec = isvc["spec"]["predictor"].get("securityContext") or {}
    uid, gid = ic.run_as({"securityContext": pod_sec}, c)
    box = sandbox(
        REPO_ROOT / "inference_service/Dockerfile",
        uid,
        gid or uid,
        writable=ic.emptydir_mounts(runtime["spec"], c),
    )
    models = save_iris_models(box.directory("models", writable=False))
    box.mount("/mnt/models", models["xgboost"])
    secrets = {("predictor-auth", "token"): TOKEN}
    env = {
        **ic.container_env(c, secrets),
        **ic.container_env(isvc["spec"]["predictor"]["model"], secrets),  # KServe merges these
    }
    name, port = isvc["metadata"]["name"], free_port()
    args = [a.replace("{{.Name}}", name) for a in c["args"]]
    args = [f"--http_port={port}" if a.startswith("--http_port=") else a for a in args]
    proc = box.popen([*c["command"], *args], box.env(env), tmp_path / "predictor.log")
    try:
        _wait_ready(f"http://127.0.0.1:{port}/v2/health/ready", proc, 180)
        body = json.loads((REPO_ROOT / "inference_service/input.json").read_text())
        url = f"http://127.0.0.1:{port}/v2/models/{name}/infer"
        assert requests.post(url, json=body, timeout=30).status_code == 401
        ok = requests.post(url, json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        assert ok.status_code == 200, ok.text
        assert len(ok.json()["outputs"][0]["data"]) == 2
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except Exception:  # noqa: BLE001 - a stuck predictor must not outlive the test
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert (tmp_path / "predictor.log").exists()


# --- predictor image: the promotion Job ---------------------------------------------------------


def test_promotion_job_runs_as_its_pod_runs_it(
    local_stack, sandbox, httpserver, cluster_prometheus
):
    job = one(render("inference_service/k8s/overlays/promotion-prod"), "Job")
    pod = job["spec"]["template"]["spec"]
    c = ic.container(pod, "promotion")
    uid, gid = ic.run_as(pod, c)
    box = sandbox(
        REPO_ROOT / "inference_service/Dockerfile", uid, gid, writable=ic.emptydir_mounts(pod, c)
    )
    namespace = job["metadata"]["namespace"]
    secrets = ic.local_secrets(local_stack)
    env = ic.point_at_local_stack(
        ic.container_env(c, secrets, {"metadata.namespace": namespace}), local_stack
    )
    # the in-cluster service name does not resolve here: the same setting the Job honours
    env["MLP_CLUSTER_PROMETHEUS_URL"] = cluster_prometheus
    seed_lake(local_stack, env["MLP_LAKE_URI"])
    # the candidate ConfigMap the launcher creates: a version the registry does not have
    model = f"contract-{uuid.uuid4().hex[:8]}"
    candidate = box.directory("candidate", writable=False)
    (candidate / ".env.best_run").write_text(
        f"MODEL_NAME={model}\nMODEL_VERSION=1\nSTORAGE_URI=s3://ml-platform/mlflow/none\n"
    )
    cm_mount = next(m["mountPath"] for m in c["volumeMounts"] if m["name"] == "candidate")
    box.mount(cm_mount, candidate)
    # the Kubernetes API as far as the promotion reads it: one InferenceService, champion v0
    isvc = env["MLP_KSERVE_ISVC_NAME"]
    path = f"/apis/serving.kserve.io/v1beta1/namespaces/{namespace}/inferenceservices/{isvc}"
    served = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": isvc, "annotations": {"ml-platform.io/model-version": "0"}},
        "spec": {"predictor": {"model": {"storageUri": "s3://ml-platform/mlflow/0"}}},
    }
    httpserver.expect_request(path, method="GET").respond_with_json(served)
    kubeconfig = box.directory("kube", writable=False) / "config"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "fake",
                "clusters": [{"name": "fake", "cluster": {"server": httpserver.url_for("/")}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "u"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
            }
        )
    )
    env = box.env(env, host_env={"KUBECONFIG": str(kubeconfig)})
    proc = box.run([*c["command"], *c["args"]], env, timeout=600)
    assert proc.returncode == 2, tail(proc)  # stopped at the gates: the version is unknown
    assert f"## Promotion of {model} v1 (kserve): **gates_failed**" in proc.stdout
    requests_seen = [(r.method, r.path) for r, _ in httpserver.log]
    assert requests_seen and set(requests_seen) == {("GET", path)}  # read, never patched
    reports = Path(env["MLP_STATE_DIR"]) / "promotion"
    assert (reports / "last.json").is_file()
    assert json.loads((reports / "last.json").read_text())["outcome"] == "gates_failed"
    assert np.isfinite(job["spec"]["activeDeadlineSeconds"])
