"""What the promotion asks MLflow: does the version exist, who is champion, how good is it.

Scores are recomputed on the current held-out test split for *both* candidate and
champion, so the comparison is on the same rows (the metrics logged at tuning time may
come from different lake versions).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from helper.errors import PlatformError
from helper.settings import Settings

CHAMPION_ALIAS = "champion"


class PromotionError(PlatformError, RuntimeError):
    """The promotion cannot go on; the message says what is missing or wrong."""


@dataclass(frozen=True)
class ModelRef:
    """One registered version and where its files are."""

    name: str
    version: str
    storage_uri: str
    run_id: str | None = None


def client(settings: Settings):
    from mlflow.tracking import MlflowClient

    return MlflowClient(settings.tracking_uri)


def version_exists(mlflow_client, name: str, version: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        mlflow_client.get_model_version(name, version)
    except MlflowException:
        return False
    return True


def champion(mlflow_client, name: str, settings: Settings) -> ModelRef | None:
    """The version behind alias `champion`, or None before the first promotion."""
    from mlflow.exceptions import MlflowException

    from ml_platform.artifacts import resolve_storage_uri

    try:
        mv = mlflow_client.get_model_version_by_alias(name, CHAMPION_ALIAS)
    except MlflowException:
        return None
    uri = resolve_storage_uri(
        mlflow_client.get_model_version_download_uri(name, mv.version),
        settings.artifacts_destination,
    )
    return ModelRef(name, str(mv.version), uri, mv.run_id)


def move_champion(mlflow_client, ref: ModelRef) -> None:
    mlflow_client.set_registered_model_alias(ref.name, CHAMPION_ALIAS, ref.version)


def signature_inputs(model_dir) -> list[tuple[str, str]]:
    """(name, type) of every signature input; unnamed inputs get their position."""
    from mlflow.models import Model

    sig = Model.load(str(model_dir / "MLmodel")).signature
    if sig is None or sig.inputs is None:
        return []
    out = []
    for i, col in enumerate(sig.inputs.inputs):
        kind = getattr(getattr(col, "type", None), "name", str(getattr(col, "type", "")))
        out.append((col.name or f"#{i}", str(kind)))
    return out


def held_out(settings: Settings) -> tuple[list[str], np.ndarray, np.ndarray, int]:
    """(features, X, y, number of classes) of the latest published test split."""
    from data_platform.lake import LakeError, latest_manifest, read_split

    spec = settings.dataset
    try:
        manifest = latest_manifest(settings.lake_uri, spec.name, settings)
        frame = read_split(manifest, "test", settings)
    except LakeError as exc:
        raise PromotionError(f"held-out test set: {exc}") from None
    features = list(manifest["features"])
    x = frame[features].to_numpy(dtype=np.float32)
    y = frame["label"].to_numpy(dtype=np.int64)
    return features, x, y, len(manifest["classes"])


def score(model_dir, features: list[str], x: np.ndarray, y: np.ndarray, n_classes: int) -> dict:
    """accuracy / recall_macro / log_loss of a model on (x, y), through the serving load path."""
    from inference_service.model_loader import load_model
    from ml_platform.train import compute_metrics

    loaded = load_model(model_dir)
    missing = [f for f in loaded.features if f not in features]
    if missing:
        raise PromotionError(f"model inputs {missing} are not columns of the held-out test set")
    cols = [features.index(f) for f in loaded.features]
    xs = x[:, cols]
    if loaded.predict_proba is not None:
        return compute_metrics(y, loaded.predict_proba(xs), n_classes)
    labels = np.asarray(loaded.predict_labels(xs), dtype=np.int64)
    onehot = np.eye(n_classes)[labels]
    return compute_metrics(y, onehot, n_classes)
