"""The model and the request rows every serving configuration and the limit share.

By default the bench trains one XGBClassifier on iris with the platform's own trainer
and saves it exactly as tuning logs it (xgboost flavour, named double inputs, input
example, explicit pip requirements), so the bench needs no running registry. Pass a
downloaded registered model directory (`--model-dir`) to measure that one instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from helper.settings import Settings

BENCH_MODEL_NAME = "bench"
# A fixed, ordinary configuration: serving cost depends on tree count and depth, not on
# how good the model is.
BENCH_PARAMS = {"max_depth": 4, "learning_rate": 0.1, "subsample": 0.9, "colsample_bytree": 0.9}
BENCH_ROUNDS = 60


def iris_frame(settings: Settings) -> pd.DataFrame:
    """Iris as the lake holds it: spec feature names (double) + `label` index."""
    from sklearn.datasets import load_iris

    spec = settings.dataset
    bunch = load_iris()
    frame = pd.DataFrame(bunch.data, columns=spec.features).astype("float64")
    frame["label"] = bunch.target.astype("int32")
    return frame


def build_model(dest: Path, settings: Settings) -> Path:
    """Train and save the bench model under `dest` (reused when already there)."""
    if (dest / "MLmodel").is_file():
        return dest
    import mlflow.xgboost
    from mlflow.models import infer_signature

    from ml_platform.tracking import model_pip_requirements
    from ml_platform.train import train_model

    spec = settings.dataset
    frame = iris_frame(settings)
    result = train_model(
        BENCH_PARAMS, frame, frame, spec.features, len(spec.classes), BENCH_ROUNDS, seed=0
    )
    example = frame[spec.features].head(5)
    dest.parent.mkdir(parents=True, exist_ok=True)
    mlflow.xgboost.save_model(
        result.model,
        str(dest),
        signature=infer_signature(example, result.model.predict(example)),
        input_example=example,
        pip_requirements=model_pip_requirements(),
    )
    return dest


def model_features(model_dir: Path) -> list[str]:
    from inference_service.model_loader import signature_features

    return signature_features(model_dir)[0]


def request_rows(features: list[str], n: int, seed: int = 0) -> np.ndarray:
    """`n` iris-like rows (float64) drawn around the iris value ranges; same seed, same rows."""
    rng = np.random.default_rng(seed)
    lo = np.array([4.3, 2.0, 1.0, 0.1] + [0.0] * max(0, len(features) - 4))[: len(features)]
    hi = np.array([7.9, 4.4, 6.9, 2.5] + [1.0] * max(0, len(features) - 4))[: len(features)]
    return np.round(rng.uniform(lo, hi, size=(n, len(features))), 2)


def v2_body(features: list[str], rows: np.ndarray) -> bytes:
    """Open Inference Protocol v2 body with one named FP64 input per feature: the form
    every configuration (our predictor, MLServer's MLflow runtime) accepts unchanged."""
    inputs = [
        {"name": f, "shape": [len(rows)], "datatype": "FP64", "data": rows[:, j].tolist()}
        for j, f in enumerate(features)
    ]
    return json.dumps({"id": "bench", "inputs": inputs}).encode()
