"""Train and score one XGBoost configuration.

Kept free of Ray and MLflow so the Tune trial, the registry's held-out check, tests
and benchmarks all train and score a model the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xgboost as xgb

LABEL_COLUMN = "label"

RoundHook = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class TrainResult:
    """A fitted classifier, its final metrics on the eval frame and the per-round curve."""

    model: xgb.XGBClassifier
    metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def class_probabilities(raw: np.ndarray) -> np.ndarray:
    """(rows, classes) float64 probabilities summing to one.

    XGBoost returns one column for binary problems and float32 values whose rows miss 1.0
    by rounding; metrics want one column per class and proper distributions.
    """
    proba = np.asarray(raw, dtype="float64")
    if proba.ndim == 1:
        proba = np.column_stack([1.0 - proba, proba])
    return proba / proba.sum(axis=1, keepdims=True)


def compute_metrics(y_true: Sequence[int], proba: np.ndarray, n_classes: int) -> dict[str, float]:
    """accuracy, macro recall and log-loss, with every class counted even if absent from y_true
    (a small eval split may miss a class; scores must stay comparable across trials).

    Plain numpy rather than sklearn.metrics: this runs after every boosting round, and the
    sklearn calls' input validation cost more than the boosting round itself.
    """
    y = np.asarray(y_true, dtype="int64")
    proba = class_probabilities(proba)
    if proba.shape != (len(y), n_classes):
        raise ValueError(f"proba: expected shape {(len(y), n_classes)}, got {proba.shape}")
    y_pred = proba.argmax(axis=1)
    hits = y_pred == y
    recalls = [hits[y == c].mean() if (y == c).any() else 0.0 for c in range(n_classes)]
    eps = np.finfo("float64").eps
    picked = np.clip(proba[np.arange(len(y)), y], eps, 1.0)
    return {
        "accuracy": float(hits.mean()),
        "recall_macro": float(np.mean(recalls)),
        "log_loss": float(-np.log(picked).mean()),
    }


def split_xy(frame: pd.DataFrame, features: Sequence[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """Feature matrix (named float columns, the model signature's inputs) and integer labels."""
    missing = [c for c in [*features, LABEL_COLUMN] if c not in frame.columns]
    if missing:
        raise ValueError(f"frame is missing column(s) {missing}")
    return frame[list(features)].astype("float64"), frame[LABEL_COLUMN].to_numpy(dtype="int64")


class _RoundMetrics(xgb.callback.TrainingCallback):
    """Scores the eval frame after every boosting round so a scheduler can stop bad trials early."""

    def __init__(self, x_eval: pd.DataFrame, y_eval: np.ndarray, n_classes: int, hook: RoundHook):
        self._x = x_eval
        self._y = y_eval
        self._n_classes = n_classes
        self._hook = hook
        self.history: list[dict[str, float]] = []

    def after_iteration(self, model, epoch: int, evals_log) -> bool:
        proba = model.inplace_predict(self._x, iteration_range=(0, epoch + 1))
        metrics = compute_metrics(self._y, proba, self._n_classes)
        self.history.append({"round": epoch + 1, **metrics})
        self._hook(epoch + 1, metrics)
        return False  # never stop here; stopping is the scheduler's decision


def train_model(
    params: Mapping[str, float | int],
    train: pd.DataFrame,
    evaluation: pd.DataFrame,
    features: Sequence[str],
    n_classes: int,
    num_rounds: int,
    *,
    seed: int = 0,
    nthread: int = 1,
    on_round: RoundHook | None = None,
) -> TrainResult:
    """Fit one XGBClassifier config on `train`, score it on `evaluation` after every round.

    `n_classes` comes from the data set spec, not from the data, so a split that happens to
    lack a class is reported clearly instead of silently training a smaller model.
    """
    x_train, y_train = split_xy(train, features)
    x_eval, y_eval = split_xy(evaluation, features)
    present = set(np.unique(y_train).tolist())
    expected = set(range(n_classes))
    if present != expected:
        raise ValueError(
            f"label: training split must contain every class index {sorted(expected)}, "
            f"found {sorted(present)}"
        )
    recorder = _RoundMetrics(x_eval, y_eval, n_classes, on_round or (lambda _r, _m: None))
    model = xgb.XGBClassifier(
        **dict(params),
        n_estimators=num_rounds,
        random_state=seed,
        n_jobs=nthread,
        tree_method="hist",
        callbacks=[recorder],
    )
    started = time.perf_counter()
    model.fit(x_train, y_train, verbose=False)
    seconds = time.perf_counter() - started
    model.set_params(callbacks=None)  # the hook holds Ray state; keep it out of the saved model
    metrics = compute_metrics(y_eval, model.predict_proba(x_eval), n_classes)
    return TrainResult(model=model, metrics=metrics, history=recorder.history, seconds=seconds)
