"""Iris models with one injected fault, for the canary analysis' tests and demos.

Each wraps a trained XGBClassifier (its booster is an MLflow artifact) in an MLflow pyfunc
that misbehaves only where the gates do not look, so it is the *analysis* that must
catch it on live metrics:

* `errors` — a single-row request whose `column` is >= `value` raises (a 500): a bug in
  the one-row path; the gates score the held-out split as one batch and pass;
* `slow` — every request sleeps `value` seconds first (20x a ~1 ms answer at 0.025 s);
* `flip` — rows predicted class 1 whose `column` is >= `value` are answered class 2.

The predictor serves them through its pyfunc path (`inference_service.model_loader`);
the class is importable from the repo, so the pickled model resolves it by name.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import mlflow.pyfunc
import numpy as np

FAULTS = ("errors", "slow", "flip")


class FaultyIris(mlflow.pyfunc.PythonModel):
    def __init__(self, fault: str, value: float, column: str = "petal_width"):
        if fault not in FAULTS:
            raise ValueError(f"fault: '{fault}' is not one of {', '.join(FAULTS)}")
        self.fault, self.value, self.column = fault, float(value), column

    def load_context(self, context) -> None:
        import xgboost

        self.booster = xgboost.Booster()
        self.booster.load_model(context.artifacts["booster"])

    def predict(self, context, model_input, params=None):
        x = model_input.to_numpy(dtype=np.float32)
        labels = np.asarray(self.booster.inplace_predict(x)).argmax(axis=1)
        col = model_input[self.column].to_numpy()
        if self.fault == "slow":
            time.sleep(self.value)
        elif self.fault == "errors" and len(x) == 1 and col[0] >= self.value:
            raise RuntimeError(f"injected fault: {self.column} >= {self.value} on one row")
        elif self.fault == "flip":
            labels = np.where((labels == 1) & (col >= self.value), 2, labels)
        return labels


def faulty_predictions(model, frame, fault: str, value: float, column: str = "petal_width"):
    """What FaultyIris answers for `frame` in one batch (for tests to size a fault)."""
    labels = model.predict(frame)
    col = frame[column].to_numpy()
    if fault == "flip":
        labels = np.where((labels == 1) & (col >= value), 2, labels)
    return labels


def log_faulty_model(model, features: list[str], fault: str, value: float, **kw):
    """Log `model` (an XGBClassifier) wrapped with `fault` to the active MLflow run; returns
    the ModelInfo (named double signature and an input example, like a registered model)."""
    import pandas as pd
    from mlflow.models import infer_signature

    sample = pd.DataFrame(np.ones((2, len(features))), columns=features)
    with tempfile.TemporaryDirectory() as tmp:
        booster = Path(tmp) / "booster.json"
        model.get_booster().save_model(str(booster))
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=FaultyIris(fault, value, **kw),
            artifacts={"booster": str(booster)},
            signature=infer_signature(sample, model.predict(sample)),
            input_example=sample,
            pip_requirements=["xgboost", "pandas", "numpy"],
        )
