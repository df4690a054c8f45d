"""One Ray Tune trial: the search space, and the function each Ray worker runs.

Each trial opens its own MLflow child run over HTTP (artifacts are proxied by the server, so
workers need no S3 credentials), reports every `REPORT_EVERY_ROUNDS` boosting rounds so ASHA
can stop it early, and logs the fitted model with an explicit signature, input example and pins.
"""

from __future__ import annotations

import time

import pandas as pd

from ml_platform.train import train_model

# A report every k rounds instead of every round: on small data a round takes ~10 ms, about
# what one `tune.report` costs, and ASHA's rungs (in rounds) only need multiples of k.
REPORT_EVERY_ROUNDS = 5

# XGBoost's own defaults, all inside `search_space()`: the first configuration every search
# evaluates (Ray Tune's `points_to_evaluate`), so a session never ends below what an untuned
# model would have scored, and TPE starts from a known-good point instead of a random one.
XGBOOST_DEFAULTS = {
    "max_depth": 6,
    "learning_rate": 0.3,
    "subsample": 1.0,
    "colsample_bytree": 1.0,
    "min_child_weight": 1.0,
    "reg_lambda": 1.0,
}


def should_report(round_no: int, max_rounds: int) -> bool:
    """Intermediate report after this round? The last round is reported by the caller, once
    the trial's work is complete (see `run_trial`)."""
    return round_no < max_rounds and round_no % REPORT_EVERY_ROUNDS == 0


def search_space() -> dict:
    """Ranges that matter for small tabular data; the number of rounds is the scheduler's."""
    from ray import tune

    return {
        "max_depth": tune.randint(2, 8),
        "learning_rate": tune.loguniform(0.02, 0.5),
        "subsample": tune.uniform(0.6, 1.0),
        "colsample_bytree": tune.uniform(0.5, 1.0),
        "min_child_weight": tune.loguniform(0.1, 10.0),
        "reg_lambda": tune.loguniform(1e-3, 10.0),
    }


def run_trial(
    config: dict,
    *,
    fit: pd.DataFrame,
    val: pd.DataFrame,
    features: list[str],
    n_classes: int,
    max_rounds: int,
    seed: int,
    tracking_uri: str,
    experiment_id: str,
    parent_run_id: str,
    http_env: dict[str, str] | None = None,
) -> None:
    """One trial inside a Ray worker: child run, a report every few rounds, model logged at the end.

    The last round is reported only after the run is complete, because ASHA stops a trial
    that reaches `max_t` and stopping ends this function at its next `tune.report`.
    Every report carries `started_at` (unix s): the session's time to first trial reads it.
    """
    started_at = time.time()
    from mlflow.tracking import MlflowClient
    from ray import tune

    # here, not at module level: importing this module (the bench's trainable does, for
    # `should_report`) must not pull MLflow into every fresh Ray worker
    from ml_platform import tracking

    tracking.apply_http_env(http_env or {})
    context = tune.get_context()
    client = MlflowClient(tracking_uri)
    run = client.create_run(
        experiment_id,
        run_name=context.get_trial_name(),
        tags={tracking.PARENT_TAG: parent_run_id, tracking.TRIAL_TAG: context.get_trial_id()},
    )
    run_id = run.info.run_id
    try:
        tracking.log_params(client, run_id, {**config, "num_rounds": max_rounds, "seed": seed})

        def report(round_no: int, metrics: dict[str, float]) -> None:
            if should_report(round_no, max_rounds):
                tune.report({**metrics, "round": round_no, "started_at": started_at})

        result = train_model(
            config, fit, val, features, n_classes, max_rounds, seed=seed, on_round=report
        )
        tracking.log_history(client, run_id, result.history)
        tracking.log_metrics(
            client, run_id, {**result.metrics, "train_seconds": result.seconds}, step=max_rounds
        )
        model_id = _log_model(tracking_uri, run_id, result.model, fit[features])
        client.set_tag(run_id, tracking.MODEL_ID_TAG, model_id)
        client.set_terminated(run_id, "FINISHED")
    except Exception:
        client.set_terminated(run_id, "FAILED")
        raise
    tune.report({**result.metrics, "round": max_rounds, "started_at": started_at})


def _log_model(tracking_uri: str, run_id: str, model, features_frame: pd.DataFrame) -> str:
    """Log the fitted classifier under the child run; returns the MLflow 3 model id."""
    import mlflow
    import mlflow.xgboost
    from mlflow.models import infer_signature

    from ml_platform import tracking

    example = features_frame.head(5)
    signature = infer_signature(example, model.predict(example))
    with tracking.tracking_uri_scope(tracking_uri), mlflow.start_run(run_id=run_id):
        info = mlflow.xgboost.log_model(
            model,
            name="model",
            signature=signature,
            input_example=example,
            pip_requirements=tracking.model_pip_requirements(),
        )
    return info.model_id
