"""Fetch an MLflow model and wrap it in the fastest predict function its flavour allows.

XGBoost models are served through the native booster on NumPy arrays: MLflow's
pyfunc wrapper builds a pandas frame per request, which costs more than the
trees themselves for single rows. Every other flavour falls back to pyfunc, so
any registered MLflow model can still be served. Downloads go through MLflow
(`models:/`, `runs:/`, `s3://`, local paths), never hand-written S3 code.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from helper.errors import PlatformError
from helper.settings import Settings

NUMERIC_SIGNATURE_TYPES = {"double", "float", "integer", "long"}


class ModelLoadError(PlatformError, RuntimeError):
    """The model cannot be served; the message says what is wrong and where."""


@dataclass
class LoadedModel:
    """What the predictor needs: feature order, a predict function and what it returns."""

    features: list[str]
    engine: str  # "native" (xgboost booster) or "pyfunc"
    predict_proba: Callable[[np.ndarray], np.ndarray] | None
    predict_labels: Callable[[np.ndarray], np.ndarray]
    flavors: list[str] = field(default_factory=list)
    model_dir: Path | None = None


@contextlib.contextmanager
def _download_env(settings: Settings):
    """MLflow's S3 client reads its endpoint and keys from the environment: mirror the
    settings for the download only. Left in `os.environ`, one store's keys would follow
    every later download in the process (a predictor reloading from another store)."""
    saved = {key: os.environ.get(key) for key in settings.s3_env()}
    os.environ.update(settings.s3_env())
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def fetch_model(storage_uri: str, settings: Settings) -> Path:
    """Local directory holding `MLmodel` for a path, file://, s3://, models:/ or runs:/ URI."""
    scheme = urlparse(storage_uri).scheme
    if scheme in ("", "file"):
        path = Path(urlparse(storage_uri).path if scheme == "file" else storage_uri)
        if not (path / "MLmodel").is_file():
            raise ModelLoadError(f"storage_uri: no MLmodel file under {path}")
        return path
    if scheme not in {"s3", "s3a", "models", "runs", "mlflow-artifacts", "http", "https"}:
        raise ModelLoadError(f"storage_uri: unsupported scheme '{scheme}://' in {storage_uri}")
    import mlflow

    from ml_platform.tracking import tracking_uri_scope

    uri = "s3://" + storage_uri[len("s3a://") :] if scheme == "s3a" else storage_uri
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    dest = settings.state_dir / "serving" / "models" / digest
    if dest.is_dir():  # only ever a complete download (renamed into place below)
        return _model_root(dest, storage_uri)
    # Download beside the cache entry and rename it into place when complete, so a download
    # cut short (store killed, predictor stopped) is never mistaken for a cached model.
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{digest}.", dir=dest.parent))
    try:
        with _download_env(settings), tracking_uri_scope(settings.tracking_uri):
            mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(partial))
        _model_root(partial, storage_uri)
        try:
            os.rename(partial, dest)
        except OSError:  # another process completed the same download first
            shutil.rmtree(partial, ignore_errors=True)
    except ModelLoadError:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    except Exception as exc:  # MLflow raises many types; the URI is what the user needs
        shutil.rmtree(partial, ignore_errors=True)
        raise ModelLoadError(f"storage_uri: cannot download {storage_uri}: {exc}") from exc
    return _model_root(dest, storage_uri)


def _model_root(local: Path, storage_uri: str) -> Path:
    """The directory holding `MLmodel` inside a download."""
    if (local / "MLmodel").is_file():
        return local
    found = next(iter(sorted(local.rglob("MLmodel"))), None)
    if found is None:
        raise ModelLoadError(f"storage_uri: {storage_uri} holds no MLmodel file")
    return found.parent


def signature_features(model_dir: Path) -> tuple[list[str], list[str]]:
    """Named numeric input columns of the model's signature, plus its flavour names."""
    from mlflow.models import Model

    meta = Model.load(str(model_dir / "MLmodel"))
    flavors = sorted(meta.flavors)
    sig = meta.signature
    if sig is None or sig.inputs is None:
        raise ModelLoadError(f"{model_dir}: the model has no input signature; log it with one")
    if not sig.inputs.has_input_names():
        raise ModelLoadError(f"{model_dir}: the signature inputs are unnamed; name each feature")
    features = []
    for col in sig.inputs.inputs:
        kind = getattr(getattr(col, "type", None), "name", str(getattr(col, "type", "")))
        if kind not in NUMERIC_SIGNATURE_TYPES:
            raise ModelLoadError(f"{model_dir}: signature input '{col.name}' has type {kind}")
        features.append(col.name)
    return features, flavors


def _native_xgboost(model_dir: Path, features: list[str]) -> LoadedModel:
    import mlflow.xgboost

    model = mlflow.xgboost.load_model(str(model_dir))
    booster = model.get_booster() if hasattr(model, "get_booster") else model
    booster.set_param({"nthread": 1})  # single rows are per-call overhead, not trees
    if booster.num_features() != len(features):
        raise ModelLoadError(
            f"{model_dir}: booster expects {booster.num_features()} features, "
            f"signature names {len(features)}"
        )

    def predict_proba(x: np.ndarray) -> np.ndarray:
        out = np.asarray(booster.inplace_predict(x, validate_features=False))
        if out.ndim == 1:  # binary:logistic returns P(class 1)
            out = np.stack([1.0 - out, out], axis=1)
        return out

    def predict_labels(x: np.ndarray) -> np.ndarray:
        return predict_proba(x).argmax(axis=1)

    return LoadedModel(features, "native", predict_proba, predict_labels, ["xgboost"], model_dir)


def _pyfunc(model_dir: Path, features: list[str], flavors: list[str]) -> LoadedModel:
    import mlflow.pyfunc
    import pandas as pd

    model = mlflow.pyfunc.load_model(str(model_dir))

    def predict_labels(x: np.ndarray) -> np.ndarray:
        out = model.predict(pd.DataFrame(x.astype(np.float64), columns=features))
        arr = np.asarray(out.iloc[:, 0] if isinstance(out, pd.DataFrame) else out)
        return arr.reshape(len(x), -1)[:, 0] if arr.ndim > 1 else arr

    return LoadedModel(features, "pyfunc", None, predict_labels, flavors, model_dir)


def load_model(model_dir: Path, engine: str = "auto") -> LoadedModel:
    """Load for serving; `engine` is auto (native when xgboost), native, or pyfunc."""
    if engine not in {"auto", "native", "pyfunc"}:
        raise ModelLoadError(f"engine: '{engine}' is not one of auto, native, pyfunc")
    features, flavors = signature_features(model_dir)
    if engine == "native" and "xgboost" not in flavors:
        raise ModelLoadError(f"engine: native needs an xgboost-flavour model, got {flavors}")
    if engine in {"auto", "native"} and "xgboost" in flavors:
        return _native_xgboost(model_dir, features)
    return _pyfunc(model_dir, features, flavors)
