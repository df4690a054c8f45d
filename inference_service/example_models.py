"""Tiny iris models in MLflow format, for tests, the notebook and `measure` without a registry.

They have what a registered model has (named double signature, input example,
explicit pip requirements), so they exercise the same load path: an
XGBClassifier in the xgboost flavour (served natively) and a scikit-learn
LogisticRegression (served through the pyfunc fallback).
"""

from __future__ import annotations

from pathlib import Path

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def iris_frame():
    """Iris features as a DataFrame with the platform's column names, and the labels."""
    import pandas as pd
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    return pd.DataFrame(x, columns=FEATURES), y


def save_iris_models(dest: Path, n_estimators: int = 20, seed: int = 0) -> dict[str, Path]:
    """Write `xgboost/` and `sklearn/` model directories under `dest`; return their paths."""
    import mlflow.sklearn
    import mlflow.xgboost
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression
    from xgboost import XGBClassifier

    frame, labels = iris_frame()
    xgb = XGBClassifier(n_estimators=n_estimators, max_depth=3, random_state=seed)
    xgb.fit(frame, labels)
    signature = infer_signature(frame, xgb.predict(frame))
    paths = {"xgboost": dest / "xgboost", "sklearn": dest / "sklearn"}
    mlflow.xgboost.save_model(
        xgb,
        str(paths["xgboost"]),
        signature=signature,
        input_example=frame.head(2),
        pip_requirements=["xgboost", "scikit-learn"],
    )
    logreg = LogisticRegression(max_iter=500).fit(frame, labels)
    mlflow.sklearn.save_model(
        logreg,
        str(paths["sklearn"]),
        signature=signature,
        input_example=frame.head(2),
        pip_requirements=["scikit-learn"],
    )
    return paths
