"""Tune (smoke budget) then register against the real local stack, and check what landed:
MLflow runs, registry version + alias, PNG artifacts, model files in the S3 bucket, and the
env file. Also: the registry refuses below the gate, and the notebook runs under papermill."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_platform import lake
from helper.best_run import ENV_KEYS
from helper.settings import REPO_ROOT, Settings
from inference_service.example_models import FEATURES
from ml_platform.register import EXIT_REFUSED
from ml_platform.tune import SMOKE_BUDGET

pytestmark = [pytest.mark.integration, pytest.mark.slow]


CLASSES = ["Iris-setosa", "Iris-versicolor", "Iris-virginica"]


def write_tiny_lake(
    lake_uri: str, rows_per_class: int = 40, seed: int = 7, settings: Settings | None = None
) -> dict:
    """A published lake version in the ETL's layout, from scikit-learn's bundled iris; a
    local path or, with `settings` naming the S3 endpoint, an s3:// / s3a:// URI."""
    from sklearn.datasets import load_iris

    iris = load_iris()
    rng = np.random.default_rng(seed)
    picks = np.concatenate(
        [
            rng.choice(np.flatnonzero(iris.target == c), rows_per_class, replace=False)
            for c in range(3)
        ]
    )
    rng.shuffle(picks)
    frame = pd.DataFrame(iris.data[picks], columns=FEATURES).astype("float64")
    frame["label"] = iris.target[picks].astype("int32")
    n_test = len(frame) // 4
    test, train = frame.iloc[:n_test], frame.iloc[n_test:]
    date, version = lake.new_version()
    base = lake.version_uri(lake_uri, "iris", date, version)
    for split, part in (("train", train), ("test", test), ("rejects", test.iloc[:0])):
        fs, path = lake.filesystem(lake.join(base, split), settings)
        fs.create_dir(path, recursive=True)
        table = pa.Table.from_pandas(part, preserve_index=False)
        pq.write_table(table, f"{path}/part-0.parquet", filesystem=fs)
    manifest = lake.build_manifest(
        dataset="iris",
        version=version,
        raw_uri="sklearn:iris",
        features=FEATURES,
        label="species",
        classes=CLASSES,
        seed=seed,
        test_fraction=0.25,
        counts={None: len(frame)},
        train_rows=len(train),
        test_rows=len(test),
        base_uri=base,
    )
    fs, path = lake.filesystem(lake.join(base, lake.MANIFEST), settings)
    with fs.open_output_stream(path) as fh:
        fh.write(json.dumps(manifest).encode())
    return manifest


def _run(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def pipeline(local_stack: Settings, tmp_path_factory):
    """One smoke tune + register in a private experiment/model name on the shared stack."""
    tag = uuid.uuid4().hex[:8]
    tmp = tmp_path_factory.mktemp("tune")
    lake_uri = str(tmp / "lake")
    manifest = write_tiny_lake(lake_uri)
    env = {
        **os.environ,
        # the shared stack, explicitly: an earlier test's in-process MLflow client may have
        # exported another stack's MLFLOW_TRACKING_URI
        "MLP_TRACKING_URI": local_stack.tracking_uri,
        "MLFLOW_TRACKING_URI": local_stack.tracking_uri,
        "MLP_LAKE_URI": lake_uri,
        "MLP_EXPERIMENT_NAME": f"tune-it-{tag}",
        "MLP_REGISTERED_MODEL_NAME": f"tune-it-{tag}",
        "MLP_MIN_METRIC": "0.5",  # the gate itself is unit-tested; here we want a registration
    }
    tune = _run(["ml_platform.tune", "--smoke"], env)
    assert tune.returncode == 0, tune.stdout[-3000:] + tune.stderr[-5000:]
    env_file = tmp / ".env.best_run"
    register = _run(["ml_platform.register", "--output", str(env_file)], env)
    assert register.returncode == 0, register.stdout[-3000:] + register.stderr[-5000:]
    return {
        "settings": local_stack,
        "env": env,
        "experiment": env["MLP_EXPERIMENT_NAME"],
        "model_name": env["MLP_REGISTERED_MODEL_NAME"],
        "manifest": manifest,
        "env_file": env_file,
        "tune_out": tune.stdout,
        "tmp": tmp,
    }


def _client(settings: Settings):
    from mlflow.tracking import MlflowClient

    return MlflowClient(settings.tracking_uri)


def _session(pipeline):
    """The pipeline's parent run (id taken from the CLI's summary) and its children."""
    client = _client(pipeline["settings"])
    line = next(ln for ln in pipeline["tune_out"].splitlines() if ln.startswith("parent run"))
    parent = client.get_run(line.split()[2])
    assert parent.data.tags["session"] == "tune"
    children = client.search_runs(
        [parent.info.experiment_id],
        f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
    )
    return client, parent, children


def _session_count(pipeline) -> int:
    client = _client(pipeline["settings"])
    experiment = client.get_experiment_by_name(pipeline["experiment"])
    return len(client.search_runs([experiment.experiment_id], "tags.session = 'tune'"))


def test_one_parent_and_one_child_per_trial(pipeline):
    _, parent, children = _session(pipeline)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["lake_version"] == pipeline["manifest"]["version"]
    assert int(parent.data.params["num_samples"]) == SMOKE_BUDGET["num_samples"]
    assert len(children) == SMOKE_BUDGET["num_samples"]
    assert "best_accuracy" in parent.data.metrics
    assert "parent run" in pipeline["tune_out"]


def test_children_carry_params_metrics_and_a_model(pipeline):
    client, _, children = _session(pipeline)
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert finished, [c.info.status for c in children]
    for child in finished:
        assert {"max_depth", "learning_rate", "num_rounds"} <= set(child.data.params)
        for metric in ("accuracy", "recall_macro", "log_loss"):
            assert metric in child.data.metrics
        assert 0.0 <= child.data.metrics["accuracy"] <= 1.0
        model = client.get_logged_model(child.data.tags["model_id"])
        assert model.source_run_id == child.info.run_id
        history = client.get_metric_history(child.info.run_id, "log_loss")
        assert len(history) >= SMOKE_BUDGET["max_rounds"]


def test_registered_version_has_challenger_alias_and_env_file(pipeline):
    client = _client(pipeline["settings"])
    values = dict(
        line.split("=", 1) for line in pipeline["env_file"].read_text().splitlines() if line
    )
    assert list(values) == list(ENV_KEYS)
    version = client.get_model_version_by_alias(pipeline["model_name"], "challenger")
    assert values["MODEL_VERSION"] == str(version.version)
    assert values["RUN_ID"] == version.run_id
    assert version.source == f"models:/{values['MODEL_ID']}"
    logged = client.get_logged_model(values["MODEL_ID"])
    assert pipeline["model_name"] in logged.tags.get("mlflow.modelVersions", "")
    dest = pipeline["settings"].artifacts_destination.rstrip("/")
    assert values["STORAGE_URI"].startswith(f"{dest}/")
    assert values["STORAGE_URI"].endswith(f"/models/{values['MODEL_ID']}/artifacts")
    run = client.get_run(values["RUN_ID"])
    assert float(values["METRIC_VALUE"]) == pytest.approx(run.data.metrics["accuracy"])
    assert "test_accuracy" in run.data.metrics


def test_registered_run_has_evaluation_pngs(pipeline, tmp_path):
    client = _client(pipeline["settings"])
    run_id = client.get_model_version_by_alias(pipeline["model_name"], "challenger").run_id
    names = {a.path for a in client.list_artifacts(run_id, "evaluation")}
    assert names == {"evaluation/confusion_matrix.png", "evaluation/feature_importance.png"}
    local = client.download_artifacts(run_id, "evaluation/confusion_matrix.png", str(tmp_path))
    assert Path(local).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_model_files_are_in_the_bucket(pipeline):
    settings: Settings = pipeline["settings"]
    uri = dict(
        line.split("=", 1) for line in pipeline["env_file"].read_text().splitlines() if line
    )["STORAGE_URI"]
    if not uri.startswith("s3://"):
        pytest.fail(f"the stack stores artifacts at {uri}, expected S3")
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    s3 = boto3.client("s3", **settings.s3_client_kwargs())
    keys = {
        o["Key"].removeprefix(prefix + "/")
        for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    }
    assert {"MLmodel", "model.ubj", "requirements.txt", "input_example.json"} <= keys
    body = s3.get_object(Bucket=bucket, Key=f"{prefix}/requirements.txt")["Body"].read()
    assert b"xgboost==" in body


def test_register_refuses_below_the_gate_and_keeps_the_env_file(pipeline):
    before = pipeline["env_file"].read_text()
    env = {**pipeline["env"], "MLP_MIN_METRIC": "1.01"}  # accuracy can never reach it
    result = _run(["ml_platform.register", "--output", str(pipeline["env_file"])], env)
    assert result.returncode == EXIT_REFUSED, result.stderr[-3000:]
    assert "below the floor" in result.stderr
    assert pipeline["env_file"].read_text() == before


def test_notebook_runs_with_the_smoke_budget(pipeline):
    import papermill

    out = pipeline["tmp"] / "ray_tune.out.ipynb"
    sessions_before = _session_count(pipeline)
    saved = os.environ.copy()
    os.environ.update({k: pipeline["env"][k] for k in ("MLP_LAKE_URI", "MLP_EXPERIMENT_NAME")})
    try:
        papermill.execute_notebook(
            str(REPO_ROOT / "ml_platform" / "ray_tune.ipynb"),
            str(out),
            parameters={"smoke": True},
            cwd=str(REPO_ROOT),
            kernel_name="python3",
            progress_bar=False,
        )
    finally:
        os.environ.clear()
        os.environ.update(saved)
    executed = json.loads(out.read_text())
    text = json.dumps(executed["cells"])
    assert "best accuracy" in text
    assert "image/png" in text  # the best-so-far plot rendered
    assert _session_count(pipeline) == sessions_before + 1
