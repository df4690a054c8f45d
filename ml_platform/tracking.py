"""Small MLflow helpers shared by tuning and registration.

Everything goes through the tracking server over HTTP (`MlflowClient(tracking_uri)`), so
Ray workers and the registry need no S3 credentials: the server proxies artifacts.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # MLflow is imported where it is used: the tuning CLI starts Ray first
    from mlflow.tracking import MlflowClient

PARENT_TAG = "mlflow.parentRunId"
SESSION_TAG = "session"
SESSION_VALUE = "tune"
TRIAL_TAG = "tune_trial_id"
MODEL_ID_TAG = "model_id"
STOPPED_TAG = "tune_stopped_early"

# Packages the logged model needs at load time. Pinned to what trained it: inferring them
# takes ~9 s per model and, inside Ray workers, records Ray's bundled copies instead.
_MODEL_PACKAGES = ("mlflow", "xgboost", "scikit-learn", "numpy", "pandas", "scipy")
_DISTRIBUTION_ALIASES = {"xgboost": ("xgboost", "xgboost-cpu")}


def _installed_version(package: str) -> str:
    for dist in _DISTRIBUTION_ALIASES.get(package, (package,)):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    raise RuntimeError(f"model requirement '{package}' is not installed")


def model_pip_requirements() -> list[str]:
    """Explicit `name==version` pins for the logged model's environment."""
    return [f"{pkg}=={_installed_version(pkg)}" for pkg in _MODEL_PACKAGES]


def http_env(settings) -> dict[str, str]:
    """MLflow client retry/timeout variables from the settings.

    MLflow's defaults (7 retries with backoff factor 2, 120 s per request) turn a dead tracking
    server into minutes of silent waiting per call; these keep a failure within seconds.
    """
    return {
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(settings.tracking_max_retries),
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(settings.tracking_backoff_factor),
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(settings.tracking_timeout_s),
    }


def apply_http_env(env: Mapping[str, str]) -> None:
    """Export `http_env` in this process; MLflow reads the variables on every request, and
    Ray started afterwards hands them to its workers (trials also apply them explicitly,
    because on a cluster the workers do not inherit the driver's environment)."""
    os.environ.update(env)


def one_line(exc: BaseException) -> str:
    """The last line of an exception's text (MLflow/Ray put the useful part at the end)."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    text = lines[-1] if lines else ""
    return f"{exc.__class__.__name__}: {text[:400]}"


def ensure_experiment(client: MlflowClient, name: str) -> str:
    """Experiment id for `name`, created on first use (artifact location is the server's)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            raise RuntimeError(f"experiment_name: '{name}' is deleted on the server; restore it")
        return experiment.experiment_id
    return client.create_experiment(name)


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, object]) -> None:
    from mlflow.entities import Param

    client.log_batch(run_id, params=[Param(str(k), str(v)) for k, v in params.items()])


def log_metrics(
    client: MlflowClient, run_id: str, metrics: Mapping[str, float], step: int = 0
) -> None:
    """One HTTP call for many metrics; per-call latency dominates on small models."""
    from mlflow.entities import Metric as MlflowMetric

    ts = _now_ms()
    client.log_batch(
        run_id, metrics=[MlflowMetric(k, float(v), ts, step) for k, v in metrics.items()]
    )


def log_history(client: MlflowClient, run_id: str, history: list[dict[str, float]]) -> None:
    """Per-round curve as stepped metrics, in batches under the server's 1000-entry limit."""
    from mlflow.entities import Metric as MlflowMetric

    ts = _now_ms()
    entries = [
        MlflowMetric(key, float(value), ts, int(row["round"]))
        for row in history
        for key, value in row.items()
        if key != "round"
    ]
    for start in range(0, len(entries), 900):
        client.log_batch(run_id, metrics=entries[start : start + 900])


def _now_ms() -> int:
    return int(time.time() * 1000)


@contextlib.contextmanager
def tracking_uri_scope(uri: str) -> Iterator[None]:
    """Point MLflow's fluent calls (register_model, start_run, artifact downloads, `models:/`
    resolution) at `uri` for the body only.

    Those calls read a process-wide URI, and `mlflow.set_tracking_uri` also exports
    MLFLOW_TRACKING_URI to every later subprocess, so setting it once and forgetting it sends
    later work (another stack's tests, a restarted server) to the wrong server. Client calls
    take the URI explicitly (`MlflowClient(uri)`) and need no scope.
    """
    import mlflow

    env_before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(None)  # clears the module value and the exported variable
        if env_before is not None:
            os.environ["MLFLOW_TRACKING_URI"] = env_before
