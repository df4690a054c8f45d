"""The issue-16 story end to end: `./task pipeline`, stop everything (`serve:down local:down`),
`local:up` again, and nothing is lost: the champion serves from the store (its local cache
deleted first), the lake's last version and every run's and model's files read back the
same, and a second pipeline promotes its challenger through the canary.

One private stack (own ports, state dir, lake and best-run file), smoke tuning budget.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import boto3
import pytest
import requests

from bench.pipeline import pipeline_env
from helper.processes import port_is_free
from helper.settings import REPO_ROOT, Settings, load_settings
from ops.store_check import resolve_storage_uri, stored_files

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROW = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [6.7, 3.0, 5.2, 2.3]}]}


def _task(env: dict, *args: str, timeout: float = 1500) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(REPO_ROOT / "task"), *args], cwd=REPO_ROOT, env=env,
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert result.returncode == 0, (
        f"task {' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


def _settings(env: dict) -> Settings:
    return load_settings(
        state_dir=env["MLP_STATE_DIR"], lake_uri=env["MLP_LAKE_URI"],
        s3_port=int(env["MLP_S3_PORT"]), mlflow_port=int(env["MLP_MLFLOW_PORT"]),
        serve_port=int(env["MLP_SERVE_PORT"]),
        predictor_ports=tuple(json.loads(env["MLP_PREDICTOR_PORTS"])),
        tracking_uri=env["MLP_TRACKING_URI"], s3_endpoint_url=env["MLP_S3_ENDPOINT_URL"],
        best_run_file=env["MLP_BEST_RUN_FILE"],
    )  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    work = tmp_path_factory.mktemp("restart")
    env = {**os.environ, **pipeline_env(work), "MLP_BEST_RUN_FILE": str(work / ".env.best_run")}
    try:
        yield env, _settings(env), work
    finally:
        subprocess.run([str(REPO_ROOT / "task"), "serve:down", "local:down"], cwd=REPO_ROOT,
                       env=env, capture_output=True, timeout=300)  # fmt: skip


def _snapshot(settings: Settings) -> dict:
    """Everything a user would miss: lake manifest, every run's artifacts, every model's files."""
    from mlflow.tracking import MlflowClient

    from data_platform.lake import latest_manifest

    client = MlflowClient(settings.tracking_uri)
    experiment = client.get_experiment_by_name(settings.experiment_name)
    s3 = boto3.client("s3", **settings.s3_client_kwargs())

    def listing(run_id: str, path: str = "") -> list[str]:
        out = []
        for f in client.list_artifacts(run_id, path or None):
            out += listing(run_id, f.path) if f.is_dir else [f"{f.path}:{f.file_size}"]
        return out

    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    models = client.search_logged_models([experiment.experiment_id])
    return {
        "manifest": latest_manifest(settings.lake_uri, settings.dataset.name, settings),
        "runs": {r.info.run_id: sorted(listing(r.info.run_id)) for r in runs},
        "models": {
            m.model_id: stored_files(
                s3, resolve_storage_uri(m.artifact_location, settings.artifacts_destination)
            )
            for m in models
        },
    }


def _served_version(settings: Settings) -> str:
    url = f"http://127.0.0.1:{settings.serve_port}/v2/models/{settings.registered_model_name}/infer"
    r = requests.post(url, json=ROW, timeout=60)
    assert r.status_code == 200, r.text
    return r.headers["x-model-version"]


def test_pipeline_down_up_keeps_everything_and_a_second_pipeline_promotes(world, tmp_path):
    import mlflow
    from mlflow.tracking import MlflowClient

    from data_platform.lake import read_split
    from helper.best_run import read_best_run

    env, settings, _ = world
    _task(env, "pipeline", "SMOKE=1")
    first = read_best_run(settings.best_run_file)["MODEL_VERSION"]
    assert _served_version(settings) == first
    before = _snapshot(settings)
    assert before["runs"] and before["models"]
    assert any(files for files in before["models"].values())

    _task(env, "serve:down", "local:down")
    ports = [*settings.store_ports.values(), settings.mlflow_port, settings.serve_port,
             *settings.predictor_ports]  # fmt: skip
    assert all(port_is_free(p) for p in ports), [p for p in ports if not port_is_free(p)]
    shutil.rmtree(settings.state_dir / "serving" / "models")  # served from the store, not a cache

    up = _task(env, "local:up")
    assert "consistent" in up.stdout and "warning" not in up.stderr, up.stdout + up.stderr
    _task(env, "serve:up")
    assert _served_version(settings) == first

    after = _snapshot(settings)
    assert after == before
    manifest = after["manifest"]
    assert len(read_split(manifest, "train", settings)) == manifest["train_rows"]
    # tracking_uri per call: mlflow.set_tracking_uri would also export MLFLOW_TRACKING_URI
    # to later tests' subprocesses, pointing them at this test's stack once it is down.
    uri = settings.tracking_uri
    for run_id in before["runs"]:  # every run's files download, not only list
        mlflow.artifacts.download_artifacts(
            run_id=run_id, dst_path=str(tmp_path / run_id), tracking_uri=uri
        )
    client = MlflowClient(uri)
    for model_id in before["models"]:  # models:/<id> would resolve against the global URI
        location = client.get_logged_model(model_id).artifact_location
        mlflow.artifacts.download_artifacts(
            artifact_uri=location, dst_path=str(tmp_path / model_id), tracking_uri=uri
        )

    _task(env, "pipeline", "SMOKE=1")
    second = read_best_run(settings.best_run_file)["MODEL_VERSION"]
    assert int(second) == int(first) + 1
    report = json.loads((settings.state_dir / "promotion" / "last.json").read_text())
    assert (report["version"], report["outcome"]) == (second, "promoted"), report
    assert report["steps"] and report["load"]["sent"] > 0, report  # canary traffic, analysed
    assert _served_version(settings) == second
    alias = client.get_model_version_by_alias(settings.registered_model_name, "champion")
    assert alias.version == second
