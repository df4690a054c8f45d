"""Training, metrics and budget logic of ml_platform (no Ray, no MLflow, no processes)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.metrics import accuracy_score, log_loss, recall_score

from helper.settings import load_settings
from ml_platform.data import split_validation
from ml_platform.results import best_so_far, pick_best_trial
from ml_platform.train import class_probabilities, compute_metrics, train_model
from ml_platform.tune import TuneBudget, budget_from_settings

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture(scope="module")
def iris() -> pd.DataFrame:
    data = load_iris()
    frame = pd.DataFrame(data.data, columns=FEATURES)
    frame["label"] = data.target.astype("int32")
    return frame


def test_metrics_match_sklearn_on_random_probabilities():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, size=200)
    proba = rng.dirichlet([1.0, 1.0, 1.0], size=200)
    ours = compute_metrics(y, proba, 3)
    assert ours["accuracy"] == pytest.approx(accuracy_score(y, proba.argmax(1)))
    assert ours["recall_macro"] == pytest.approx(recall_score(y, proba.argmax(1), average="macro"))
    assert ours["log_loss"] == pytest.approx(log_loss(y, proba))


def test_metrics_count_a_class_missing_from_the_eval_split():
    y = np.array([0, 0, 1, 1])
    proba = np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1]])
    metrics = compute_metrics(y, proba, 3)
    # class 2 has no rows: its recall counts as 0, as sklearn does with zero_division=0
    expected = recall_score(y, proba.argmax(1), labels=[0, 1, 2], average="macro", zero_division=0)
    assert metrics["recall_macro"] == pytest.approx(expected)
    assert metrics["accuracy"] == 1.0


def test_metrics_reject_wrong_probability_shape():
    with pytest.raises(ValueError, match="proba"):
        compute_metrics([0, 1], np.ones((2, 2)) / 2, 3)


def test_binary_scores_become_two_columns_that_sum_to_one():
    proba = class_probabilities(np.array([0.2, 0.9], dtype="float32"))
    assert proba.shape == (2, 2)
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert proba[1, 1] == pytest.approx(0.9)


def test_train_model_learns_iris_and_reports_every_round(iris):
    fit, val = split_validation(iris, seed=1)
    seen: list[int] = []
    result = train_model(
        {"max_depth": 3, "learning_rate": 0.3},
        fit,
        val,
        FEATURES,
        n_classes=3,
        num_rounds=12,
        on_round=lambda r, m: seen.append(r),
    )
    assert seen == list(range(1, 13))
    assert len(result.history) == 12
    assert result.metrics["accuracy"] > 0.85  # iris is nearly separable; chance is 1/3
    # the final metrics are the last round's curve point, computed independently
    assert result.metrics["log_loss"] == pytest.approx(result.history[-1]["log_loss"], rel=1e-6)
    assert result.history[-1]["log_loss"] < result.history[0]["log_loss"]
    assert result.model.get_params()["callbacks"] is None


def test_train_model_refuses_a_split_without_every_class(iris):
    only_two = iris[iris["label"] < 2]
    with pytest.raises(ValueError, match="label"):
        train_model({}, only_two, only_two, FEATURES, n_classes=3, num_rounds=2)


def test_train_model_names_missing_columns(iris):
    with pytest.raises(ValueError, match="petal_width"):
        train_model({}, iris.drop(columns="petal_width"), iris, FEATURES, 3, 2)


def test_validation_split_is_stratified_and_disjoint(iris):
    fit, val = split_validation(iris, fraction=0.2, seed=5)
    assert len(fit) + len(val) == len(iris)
    assert sorted(val["label"].value_counts().tolist()) == [10, 10, 10]
    assert not set(map(tuple, fit.values)) & set(map(tuple, val.values))


def test_validation_split_rejects_bad_fraction(iris):
    with pytest.raises(ValueError, match="fraction"):
        split_validation(iris, fraction=1.5)


def test_smoke_budget_is_smaller_and_cli_overrides_win(tmp_path):
    settings = load_settings(state_dir=tmp_path)
    full = budget_from_settings(settings)
    smoke = budget_from_settings(settings, smoke=True)
    assert smoke.num_samples < full.num_samples
    assert smoke.max_rounds < full.max_rounds
    custom = budget_from_settings(settings, smoke=True, num_samples=5, max_concurrent=None)
    assert custom.num_samples == 5
    assert custom.max_concurrent == smoke.max_concurrent


def test_budget_caps_concurrency_at_cpus(tmp_path):
    settings = load_settings(state_dir=tmp_path, tune_cpus=1, tune_max_concurrent=4)
    assert budget_from_settings(settings).max_concurrent == 1


def test_budget_names_the_bad_field():
    with pytest.raises(ValueError, match="num_samples"):
        TuneBudget(num_samples=0, max_concurrent=1, time_budget_s=1, cpus=1, max_rounds=1)


@pytest.mark.parametrize("field,bad", [("num_samples", 0), ("time_budget_s", 0.0), ("cpus", -2)])
def test_budget_and_settings_share_one_bound(tmp_path, field, bad):
    # one definition: a CLI flag and an MLP_TUNE_* variable are refused for the same reason
    good = dict(num_samples=1, max_concurrent=1, time_budget_s=1.0, cpus=1, max_rounds=1)
    with pytest.raises(ValueError) as from_budget:
        TuneBudget(**{**good, field: bad})
    with pytest.raises(ValueError) as from_settings:
        load_settings(state_dir=tmp_path, **{f"tune_{field}": bad})
    reason = str(from_budget.value).split(": ", 1)[1].rsplit(", got", 1)[0]
    assert reason in str(from_settings.value)


def _trials() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "start_order": [0, 1, 2, 3],
            "status": ["FINISHED", "STOPPED", "FINISHED", "FINISHED"],
            "accuracy": [0.8, 0.99, 0.9, 0.85],
            "log_loss": [0.5, 0.1, 0.3, 0.2],
            "trial_id": ["a", "b", "c", "d"],
        }
    )


def test_best_so_far_follows_mode():
    trials = _trials()
    assert best_so_far(trials, "accuracy", "max").tolist() == [0.8, 0.99, 0.99, 0.99]
    assert best_so_far(trials, "log_loss", "min").tolist() == [0.5, 0.1, 0.1, 0.1]


def test_stopped_trials_cannot_be_best():
    trials = _trials()
    assert pick_best_trial(trials, "accuracy", "max")["trial_id"] == "c"
    assert pick_best_trial(trials, "log_loss", "min")["trial_id"] == "d"
    trials["status"] = "STOPPED"
    assert pick_best_trial(trials, "accuracy", "max") == {}


def test_best_trial_ties_break_like_the_registry():
    trials = _trials()
    trials["accuracy"] = 1.0
    assert pick_best_trial(trials, "accuracy", "max")["trial_id"] == "d"  # lowest log-loss
    trials["log_loss"] = 0.2
    assert pick_best_trial(trials, "accuracy", "max")["trial_id"] == "a"  # earliest


def test_load_lake_reads_latest_or_a_named_version(tmp_path):
    from ml_platform.data import load_lake
    from tests.integration.test_tune_pipeline import write_tiny_lake

    lake_uri = str(tmp_path / "lake")
    old = write_tiny_lake(lake_uri, rows_per_class=8, seed=1)
    new = write_tiny_lake(lake_uri, rows_per_class=12, seed=2)
    settings = load_settings(state_dir=tmp_path, lake_uri=lake_uri)
    latest = load_lake(settings)
    assert latest.version == new["version"]
    assert len(latest.train) + len(latest.test) == 36
    pinned = load_lake(settings, version=old["version"])
    assert pinned.version == old["version"]
    assert len(pinned.train) + len(pinned.test) == 24
    assert pinned.features == FEATURES
    with pytest.raises(ValueError, match="lake_version"):
        load_lake(settings, version="20000101T000000000000Z-abcdef")


def test_first_trial_start_is_the_earliest_started_at_after_fit():
    """Trials report `started_at`; errored trials (no metrics) and old reports are ignored."""
    from types import SimpleNamespace

    from ml_platform.results import first_trial_start_s

    grid = [
        SimpleNamespace(metrics={"started_at": 1012.5, "accuracy": 0.9}),
        SimpleNamespace(metrics={"started_at": 1003.25}),
        SimpleNamespace(metrics=None),
    ]
    assert first_trial_start_s(grid, 1000.0) == 3.25
    assert first_trial_start_s([SimpleNamespace(metrics={})], 1000.0) is None


def test_fast_start_is_a_setting_on_by_default(tmp_path, monkeypatch):
    monkeypatch.delenv("MLP_TUNE_FAST_START", raising=False)
    assert load_settings(state_dir=tmp_path).tune_fast_start is True
    monkeypatch.setenv("MLP_TUNE_FAST_START", "false")
    assert load_settings(state_dir=tmp_path).tune_fast_start is False
