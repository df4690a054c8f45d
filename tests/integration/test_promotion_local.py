"""Promotion against the real local stack: S3 + MLflow (fixture), predictors + gateway.

One module-scoped world: a lake with a held-out split, a registered model name of its
own, and a champion deployed by the promotion's first-deploy path. The tests then run in
file order against it (the good promotion last, since it changes the champion).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from helper.processes import free_port
from helper.settings import REPO_ROOT, Settings, load_settings
from inference_service.promotion import flow
from inference_service.promotion.registry import CHAMPION_ALIAS, ModelRef
from inference_service.promotion.targets import LocalTarget
from inference_service.state import load_state, state_file

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "promotion-test-iris"


# --- building blocks ---------------------------------------------------------------------


def write_lake(lake_uri: str, settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A published lake version of iris (what the ETL writes), without Spark."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.datasets import load_iris
    from sklearn.model_selection import train_test_split

    from data_platform.lake import build_manifest, new_version, version_uri

    spec = settings.dataset
    x, y = load_iris(return_X_y=True)
    frame = pd.DataFrame(x, columns=spec.features).assign(label=y.astype("int32"))
    train, test = train_test_split(frame, test_size=0.2, stratify=y, random_state=0)
    date, version = new_version()
    base = version_uri(lake_uri, spec.name, date, version)
    for split, part in (("train", train), ("test", test), ("rejects", frame.iloc[:0])):
        Path(base, split).mkdir(parents=True)
        pq.write_table(
            pa.Table.from_pandas(part, preserve_index=False), f"{base}/{split}/part-0.parquet"
        )
    manifest = build_manifest(
        dataset=spec.name,
        version=version,
        raw_uri="test",
        features=spec.features,
        label=spec.label,
        classes=spec.classes,
        seed=0,
        test_fraction=0.2,
        counts={None: len(frame)},
        train_rows=len(train),
        test_rows=len(test),
        base_uri=base,
    )
    Path(base, "manifest.json").write_text(json.dumps(manifest))
    return train, test


def fit(
    train: pd.DataFrame,
    features: list[str],
    *,
    seed: int = 0,
    rounds: int = 20,
    shuffle_labels: bool = False,
):
    from xgboost import XGBClassifier

    y = train["label"].to_numpy()
    if shuffle_labels:
        y = np.random.default_rng(seed).permutation(y)
    model = XGBClassifier(n_estimators=rounds, max_depth=3, random_state=seed, nthread=1)
    return model.fit(train[features].astype("float64"), y)


def register(settings: Settings, model, features: list[str], best_run: Path) -> ModelRef:
    """Log + register like ml_platform.register (xgboost flavour, named double signature,
    input example, explicit pins, alias challenger) and write the `.env.best_run` file."""
    import mlflow
    import mlflow.xgboost
    from mlflow.models import infer_signature

    from ml_platform.register import resolve_storage_uri, write_env_file
    from ml_platform.tracking import model_pip_requirements

    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_experiment("promotion-tests")
    sample = pd.DataFrame(np.ones((2, len(features))), columns=features)
    with mlflow.start_run() as run:
        info = mlflow.xgboost.log_model(
            model,
            name="model",
            signature=infer_signature(sample, model.predict(sample)),
            input_example=sample,
            pip_requirements=model_pip_requirements(),
        )
    mv = mlflow.register_model(f"models:/{info.model_id}", MODEL)
    client = mlflow.MlflowClient(settings.tracking_uri)
    uri = resolve_storage_uri(
        client.get_model_version_download_uri(MODEL, mv.version), settings.artifacts_destination
    )
    client.set_registered_model_alias(MODEL, "challenger", mv.version)
    env = {
        "MODEL_NAME": MODEL,
        "MODEL_VERSION": mv.version,
        "MODEL_ID": info.model_id,
        "RUN_ID": run.info.run_id,
        "STORAGE_URI": uri,
        "METRIC_NAME": "accuracy",
        "METRIC_VALUE": "0",
        "EXPERIMENT_NAME": "promotion-tests",
    }
    write_env_file(best_run, env)
    return ModelRef(MODEL, str(mv.version), uri, run.info.run_id)


def alias_version(settings: Settings) -> str | None:
    import mlflow

    client = mlflow.MlflowClient(settings.tracking_uri)
    try:
        return client.get_model_version_by_alias(MODEL, CHAMPION_ALIAS).version
    except mlflow.exceptions.MlflowException:
        return None


@dataclass
class World:
    settings: Settings
    train: pd.DataFrame
    tmp: Path
    champion: ModelRef
    first_report: object
    features: list[str] = field(default_factory=list)

    def best_run(self, name: str) -> Path:
        return self.tmp / f"{name}.env"

    def register(self, name: str, model, features: list[str] | None = None) -> ModelRef:
        return register(self.settings, model, features or self.features, self.best_run(name))

    def env(self) -> dict[str, str]:
        s = self.settings
        return {
            **os.environ,
            "MLP_STATE_DIR": str(s.state_dir),
            "MLP_LAKE_URI": s.lake_uri,
            "MLP_SERVE_PORT": str(s.serve_port),
            "MLP_PREDICTOR_PORTS": json.dumps(list(s.predictor_ports)),
            "MLP_REGISTERED_MODEL_NAME": MODEL,
        }

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.settings.serve_port}/v2/models/{MODEL}/infer"


@pytest.fixture(scope="module")
def world(local_stack: Settings, tmp_path_factory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("promotion")
    settings = load_settings(
        state_dir=tmp / "state",
        lake_uri=str(tmp / "lake"),
        serve_port=free_port(),
        predictor_ports=(free_port(), free_port()),
        registered_model_name=MODEL,
        promote_window_requests=150,
    )
    train, _ = write_lake(settings.lake_uri, settings)
    features = settings.dataset.features
    ref = register(settings, fit(train, features), features, tmp / "champion.env")
    target = LocalTarget(settings)
    try:
        first = flow.promote(settings, target, ref)
        yield World(settings, train, tmp, ref, first, features)
    finally:
        target.stack.down()


def infer_body(world: World) -> dict:
    row = world.train[world.features].iloc[0].tolist()
    return {
        "inputs": [
            {"name": f, "shape": [1], "datatype": "FP32", "data": [v]}
            for f, v in zip(world.features, row, strict=True)
        ],
        "parameters": {"content_type": "pd"},
    }


# --- tests (file order matters: the good promotion comes last) ------------------------------


def test_first_model_is_deployed_straight_as_champion(world):
    rep = world.first_report
    assert rep.outcome == "first_deploy", rep.reason
    print(f"\nfirst deploy {rep.seconds:.1f} s; gates {[g.detail for g in rep.gates]}")
    assert any("no champion" in n for n in rep.notes)
    assert alias_version(world.settings) == world.champion.version
    st = load_state(state_file(world.settings))
    assert st.champion.version == world.champion.version and st.canary is None
    resp = requests.post(world.gateway, json=infer_body(world), timeout=10)
    assert resp.status_code == 200
    assert resp.headers["x-model-version"] == world.champion.version


def test_model_below_minimum_is_stopped_at_the_gates(world):
    weak = world.register("weak", fit(world.train, world.features, shuffle_labels=True))
    before = state_file(world.settings).read_text()
    rep = flow.promote(world.settings, LocalTarget(world.settings), weak)
    assert rep.outcome == "gates_failed" and rep.exit_code == 2
    print(f"\nweak model stopped in {rep.seconds:.1f} s: {rep.reason}")
    metric = next(g for g in rep.gates if g.name == "metric")
    assert not metric.passed and metric.numbers["candidate"] < world.settings.min_metric
    assert state_file(world.settings).read_text() == before  # nothing deployed
    assert alias_version(world.settings) == world.champion.version


def test_model_that_drops_a_feature_is_stopped_at_the_gates(world):
    three = world.features[:3]
    narrow = world.register("narrow", fit(world.train, three), three)
    before = state_file(world.settings).read_text()
    rep = flow.promote(world.settings, LocalTarget(world.settings), narrow)
    assert rep.outcome == "gates_failed"
    sig = next(g for g in rep.gates if g.name == "signature")
    assert not sig.passed and world.features[3] in sig.detail
    assert [g.name for g in rep.gates][-1] == "signature"  # later gates did not run
    assert state_file(world.settings).read_text() == before


def test_disagreeing_canary_is_rolled_back_without_losing_a_request(world):
    # Gates relaxed so the analysis is what must catch it (the second line of defence).
    settings = world.settings.model_copy(update={"min_metric": 0.0, "promote_max_regression": 1.0})
    bad = world.register("bad", fit(world.train, world.features, seed=3, shuffle_labels=True))
    stop, answers = threading.Event(), []

    def background() -> None:  # a user hammering the endpoint during the whole promotion
        with requests.Session() as s:
            while not stop.is_set():
                try:
                    r = s.post(world.gateway, json=infer_body(world), timeout=10)
                    answers.append((r.status_code, r.headers.get("x-model-version")))
                except requests.RequestException as exc:
                    answers.append((0, str(exc)))
                time.sleep(0.01)

    user = threading.Thread(target=background)
    user.start()
    try:
        rep = flow.promote(settings, LocalTarget(settings), bad)
    finally:
        stop.set()
        user.join()
    assert rep.outcome == "rolled_back" and rep.exit_code == 3, rep.reason
    print(
        f"\nrollback {rep.seconds:.1f} s; {rep.reason}; window {json.dumps(rep.window)}; "
        f"background user: {len(answers)} requests, codes {sorted({c for c, _ in answers})}"
    )
    agreement = next(c for c in rep.analysis if c.name == "agreement")
    assert not agreement.passed and agreement.numbers["agreement"] < 0.9
    window = rep.window["endpoint"]
    assert window["requests"] == settings.promote_window_requests and window["lost"] == 0
    assert bad.version in window["by_version"]  # the canary did get its share
    assert answers and all(code == 200 for code, _ in answers), answers[:5]
    assert {v for _, v in answers} <= {world.champion.version, bad.version}
    st = load_state(state_file(settings))
    assert st.champion.version == world.champion.version and st.canary_percent == 0
    assert alias_version(settings) == world.champion.version
    again = flow.promote(settings, LocalTarget(settings), bad)  # decided once: no retry
    assert again.outcome == "rolled_back" and "already rolled back" in again.reason


def run_cli(world: World, best_run: Path) -> subprocess.Popen:
    argv = [
        sys.executable,
        "-m",
        "inference_service.promotion",
        "promote",
        "--json",
        "--best-run",
        str(best_run),
    ]
    return subprocess.Popen(
        argv,
        cwd=REPO_ROOT,
        env=world.env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_good_model_promoted_end_to_end_once_even_when_started_twice(world):
    good = world.register("good", fit(world.train, world.features, seed=1, rounds=30))
    start = time.monotonic()
    procs = [run_cli(world, world.best_run("good")) for _ in range(2)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    wall = time.monotonic() - start
    codes = sorted(rc for rc, _, _ in results)
    reports = [json.loads(out) for rc, out, _ in results if rc == 0]
    promoted = [r for r in reports if r["outcome"] == "promoted"]
    assert len(promoted) == 1, results  # exactly one proceeded
    other = [r for r in results if r is not None and (r[0] == 4 or "noop" in r[1])]
    assert len(other) == 1, results  # the other refused (lock) or found nothing to do
    if 4 in codes:
        assert "another promotion is in progress" in next(e for rc, _, e in results if rc == 4)
    rep = promoted[0]
    print(f"\nconcurrent CLI exit codes {codes}")
    print(
        f"\npromotion wall time {rep['seconds']:.1f} s (both CLIs {wall:.1f} s); "
        f"window {json.dumps(rep['window'])}"
    )
    assert all(c["passed"] for c in rep["gates"] + rep["analysis"])
    assert alias_version(world.settings) == good.version
    st = load_state(state_file(world.settings))
    assert st.champion.version == good.version and st.canary is None
    versions = {
        requests.post(world.gateway, json=infer_body(world), timeout=10).headers["x-model-version"]
        for _ in range(30)
    }
    assert versions == {good.version}  # 100 % on the new champion

    before = state_file(world.settings).read_text()
    again = flow.promote(world.settings, LocalTarget(world.settings), good)
    assert again.outcome == "noop" and "already the champion" in again.reason
    assert state_file(world.settings).read_text() == before
    assert alias_version(world.settings) == good.version
