"""Promote the best trial of the latest tuning session into the model registry.

Gate semantics: `settings.min_metric` is the *worst acceptable value* of `settings.metric`.
For metrics where higher is better (accuracy, recall_macro) it is a floor; for metrics where
lower is better (log_loss) the same number is a ceiling — a log-loss above it is refused.

On success: a new version of `settings.registered_model_name` with alias `challenger`,
held-out test metrics plus a confusion matrix and a feature-importance plot on the winning
run, and `ml_platform/best_model_artifacts/.env.best_run` (the GitOps trigger), written
atomically.

CLI: `python -m ml_platform.register [--output PATH]`; exit 3 when the gate refuses.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from helper.best_run import write_best_run
from helper.errors import run_cli
from helper.settings import Settings, load_settings
from ml_platform import tracking
from ml_platform.artifacts import MANIFEST_TAG, resolve_storage_uri
from ml_platform.selection import (
    Candidate,
    RegistryRefusal,
    check_gate,
    latest_session,
    select_best,
    session_candidates,
)

CHALLENGER_ALIAS = "challenger"
EXIT_REFUSED = 3


# --- MLflow side ------------------------------------------------------------------------


@dataclass(frozen=True)
class Registration:
    """What was registered, as written to the env file, plus the held-out scores."""

    env: dict[str, str]
    test_metrics: dict[str, float]
    env_file: Path


def register_best(settings: Settings, output: Path | None = None) -> Registration:
    """Select, gate, verify, document, register, alias and write the env file — in that
    order: a refusal or a failure leaves the alias and the previous env file untouched, and
    a version is only created for model files that were read back whole from the store."""
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(settings.tracking_uri)
    experiment = client.get_experiment_by_name(settings.experiment_name)
    if experiment is None:
        raise RegistryRefusal(f"experiment_name: no experiment '{settings.experiment_name}'")
    parent = latest_session(client, experiment.experiment_id)
    candidates = session_candidates(client, experiment.experiment_id, parent.info.run_id)
    best = select_best(candidates, settings.metric.value, settings.metric.mode)
    check_gate(best, settings.metric, settings.min_metric)

    with tempfile.TemporaryDirectory() as tmp:
        model_dir, files = fetch_verified_model(client, best, Path(tmp))
        test_metrics = _document_run(
            client, settings, best, parent.data.tags.get("lake_version"), model_dir
        )

    name = settings.registered_model_name
    # the fluent call also links the logged model to the new version (UI: "registered as")
    with tracking.tracking_uri_scope(settings.tracking_uri):
        version = mlflow.register_model(
            f"models:/{best.model_id}",
            name,
            tags={
                "metric": settings.metric.value,
                "session": parent.info.run_id,
                MANIFEST_TAG: json.dumps(files, sort_keys=True),
            },
        )
    try:
        storage = resolve_storage_uri(
            client.get_model_version_download_uri(name, version.version),
            settings.artifacts_destination,
        )
        for key, value in test_metrics.items():
            client.set_model_version_tag(name, version.version, key, f"{value:.6f}")
        client.set_registered_model_alias(name, CHALLENGER_ALIAS, version.version)
    except Exception:
        _withdraw_version(client, name, version.version)
        raise
    env = {
        "MODEL_NAME": name,
        "MODEL_VERSION": str(version.version),
        "MODEL_ID": best.model_id,
        "RUN_ID": best.run_id,
        "STORAGE_URI": storage,
        "METRIC_NAME": settings.metric.value,
        "METRIC_VALUE": repr(float(best.metrics[settings.metric.value])),
        "EXPERIMENT_NAME": settings.experiment_name,
    }
    path = write_best_run(output or settings.best_run_file, env)
    return Registration(env=env, test_metrics=test_metrics, env_file=path)


def fetch_verified_model(client, best: Candidate, dest: Path) -> tuple[Path, dict[str, int]]:
    """Download the candidate's logged model from the store and prove it whole: MLflow
    marked its upload READY, and the files read back load as a model. Returns the local
    directory and {path: bytes} of its files, which the version records (tag
    `artifact_files`) so `local:up` can tell later whether the store still holds them."""
    import mlflow
    from mlflow.entities import LoggedModelStatus

    logged = client.get_logged_model(best.model_id)
    if logged.status != LoggedModelStatus.READY:
        raise RegistryRefusal(
            f"model {best.model_id} of run {best.run_id} is {logged.status}, not READY: its "
            "upload did not complete; rerun `task ml:tune`"
        )
    try:
        # the stored files themselves: a `models:/` download adds a local metadata file
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=logged.artifact_location,
                dst_path=str(dest),
                tracking_uri=client.tracking_uri,
            )
        )
        mlflow.pyfunc.load_model(str(local))
    except Exception as exc:
        raise RegistryRefusal(
            f"model {best.model_id} of run {best.run_id} cannot be read back whole from "
            f"the store ({tracking.one_line(exc)}); rerun `task ml:tune`"
        ) from exc
    files = {
        str(p.relative_to(local)): p.stat().st_size for p in sorted(local.rglob("*")) if p.is_file()
    }
    return local, files


def _withdraw_version(client, name: str, version: str) -> None:
    """Best effort: a version that never got its alias would look registered but is not the
    challenger; delete it so a rerun starts from a clean registry (if MLflow still answers)."""
    try:
        client.delete_model_version(name, version)
    except Exception as exc:  # noqa: BLE001 - the original failure is what matters
        print(
            f"warning: version {version} of {name} is left without alias "
            f"({exc.__class__.__name__}); delete it by hand",
            file=sys.stderr,
        )


def _document_run(
    client, settings: Settings, best: Candidate, lake_version: str | None, model_dir: Path
) -> dict[str, float]:
    """Score the verified model on the untouched test split; attach metrics and plots."""
    import mlflow.xgboost

    from ml_platform.data import load_lake
    from ml_platform.plots import confusion_matrix_png, feature_importance_png
    from ml_platform.train import compute_metrics, split_xy

    data = load_lake(settings, version=lake_version)
    model = mlflow.xgboost.load_model(str(model_dir))
    x_test, y_test = split_xy(data.test, data.features)
    proba = model.predict_proba(x_test)
    scores = compute_metrics(y_test, proba, len(data.classes))
    test_metrics = {f"test_{k}": v for k, v in scores.items()}
    tracking.log_metrics(client, best.run_id, test_metrics)
    with tempfile.TemporaryDirectory() as tmp:
        cm = confusion_matrix_png(
            y_test, proba.argmax(axis=1), data.classes, Path(tmp) / "confusion_matrix.png"
        )
        fi = feature_importance_png(model, data.features, Path(tmp) / "feature_importance.png")
        for png in (cm, fi):
            client.log_artifact(best.run_id, str(png), artifact_path="evaluation")
    return test_metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml_platform.register", description=__doc__)
    parser.add_argument(
        "--output", type=Path, help="env file to write (default: the committed one)"
    )
    parser.add_argument("--check", action="store_true", help="only check that MLflow answers")
    args = parser.parse_args(argv)
    settings = load_settings()
    tracking.apply_http_env(tracking.http_env(settings))
    from ml_platform.tune import preflight

    problems = preflight(settings, need_lake=True)
    if problems or args.check:
        print("\n".join(problems) or "ok", file=sys.stderr if problems else sys.stdout)
        return 1 if problems else 0
    try:
        result = register_best(settings, args.output)
    except RegistryRefusal as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except Exception as exc:  # noqa: BLE001 - e.g. MLflow went away: one line, no traceback
        print(f"error: registration failed: {tracking.one_line(exc)}", file=sys.stderr)
        return 1
    for key, value in result.env.items():
        print(f"{key}={value}")
    for key, value in result.test_metrics.items():
        print(f"# {key}={value:.4f}")
    print(f"# wrote {result.env_file}")
    return 0


if __name__ == "__main__":
    run_cli(main)
