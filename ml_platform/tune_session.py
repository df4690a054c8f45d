"""The body of one tuning session, imported only once Ray is up.

Everything here needs MLflow, pandas, XGBoost and Ray Tune (~7 s of imports on a laptop).
`ml_platform.tune` starts Ray first and imports this module afterwards, so that Ray's idle
workers import the same modules (ml_platform.ray_session) while this process does, instead
of after it: the first trial then starts on a warm worker.
"""

from __future__ import annotations

import dataclasses
import sys
import time

from mlflow.tracking import MlflowClient

from helper.settings import Settings
from ml_platform import tracking
from ml_platform.budget import TuneBudget
from ml_platform.data import load_lake, split_validation
from ml_platform.progress import progress_callback, progress_path
from ml_platform.results import (
    TuneSummary,
    close_stopped_trials,
    first_trial_start_s,
    pick_best_trial,
    trials_frame,
)
from ml_platform.search import make_scheduler, make_searcher
from ml_platform.trial import run_trial, search_space


class TuningFailed(RuntimeError):
    """The session could not complete (trials errored, or MLflow went away); the parent run
    is marked FAILED when the server can still be reached."""


def run(
    settings: Settings,
    budget: TuneBudget,
    ray_start_s: float,
    wall_started: float,
    launched_unix: float | None = None,
) -> TuneSummary:
    """Load the lake, open the parent run, search, record; the parent run is always closed.

    `wall_started` is the caller's `perf_counter` before Ray started; `launched_unix`, when
    given, is when the caller's process started (the time to the first trial a user waits).
    """
    data = load_lake(settings)
    fit, val = split_validation(data.train, seed=settings.seed)
    client = MlflowClient(settings.tracking_uri)
    experiment_id = tracking.ensure_experiment(client, settings.experiment_name)
    parent_id = _open_parent(client, experiment_id, settings, budget, data, fit, val)
    status, tune_s, timings, first = "FAILED", 0.0, {}, None
    try:
        tune_started, started_unix = time.perf_counter(), time.time()
        grid = _fit_tuner(settings, budget, data, fit, val, experiment_id, parent_id)
        tune_s = time.perf_counter() - tune_started
        first = first_trial_start_s(grid, started_unix)
        timings = _first_trial_timings(grid, first, launched_unix)
        trials, best = _collect_trials(client, settings, experiment_id, parent_id, grid)
        status = "FINISHED"
    finally:
        wall_s = time.perf_counter() - wall_started
        timings.update(ray_start_s=ray_start_s, tune_s=tune_s, wall_s=wall_s)
        _close_parent(client, parent_id, status, timings)
    return TuneSummary(
        parent_run_id=parent_id,
        experiment_id=experiment_id,
        metric=settings.metric.value,
        mode=settings.metric.mode,
        trials=trials,
        best=best,
        ray_start_s=ray_start_s,
        tune_s=tune_s,
        wall_s=wall_s,
        first_trial_s=first,
        first_trial_from_launch_s=timings.get("first_trial_from_launch_s"),
    )


def _first_trial_timings(grid, first: float | None, launched_unix: float | None) -> dict:
    """When the first trial started: after `Tuner.fit`, and after the process started."""
    out = {} if first is None else {"first_trial_start_s": first}
    from_launch = first_trial_start_s(grid, launched_unix) if launched_unix else None
    if from_launch is not None:
        out["first_trial_from_launch_s"] = from_launch
    return out


def _open_parent(client, experiment_id, settings, budget, data, fit, val) -> str:
    """The session's parent run, tagged so `register` can find it; returns its id."""
    parent = client.create_run(
        experiment_id,
        run_name=f"tune-{time.strftime('%Y%m%d-%H%M%S')}",
        tags={
            tracking.SESSION_TAG: tracking.SESSION_VALUE,
            "dataset": data.manifest.get("dataset", settings.dataset.name),
            "lake_version": data.version,
            "metric": settings.metric.value,
        },
    )
    sizes = {"fit_rows": len(fit), "validation_rows": len(val), "test_rows": len(data.test)}
    tracking.log_params(client, parent.info.run_id, {**dataclasses.asdict(budget), **sizes})
    return parent.info.run_id


def _collect_trials(client, settings, experiment_id, parent_id, grid):
    """The trials' table and the best completed one (recorded on the parent run)."""
    trials = trials_frame(grid)
    trials = close_stopped_trials(client, experiment_id, parent_id, trials)
    _raise_on_trial_errors(grid)
    metric = settings.metric.value
    best = pick_best_trial(trials, metric, settings.metric.mode)
    if best:
        tracking.log_metrics(client, parent_id, {f"best_{metric}": best[metric]})
        client.set_tag(parent_id, "best_run_id", best.get("run_id") or "")
    return trials, best


def _raise_on_trial_errors(grid) -> None:
    """A session with errored trials is partial: it must end FAILED so it is never registered.

    The trials that did finish keep their FINISHED child runs (and models) for inspection.
    """
    errors = [r.error for r in grid if r.error]
    if errors:
        first = str(errors[0]).strip().splitlines()
        reason = first[-1] if first else errors[0].__class__.__name__
        raise TuningFailed(f"{len(errors)} of {len(grid)} trials failed; first: {reason[:300]}")


def _close_parent(client, parent_id: str, status: str, metrics: dict[str, float]) -> None:
    """Record timings and the final status; if MLflow is unreachable now, say so and leave the
    original error (if any) to propagate: the run stays RUNNING and `register` skips it."""
    try:
        tracking.log_metrics(client, parent_id, metrics)
        client.set_terminated(parent_id, status)
    except Exception as exc:  # noqa: BLE001 - a dead server must not mask the real error
        print(
            f"warning: could not mark parent run {parent_id} {status} "
            f"({exc.__class__.__name__}); MLflow unreachable?",
            file=sys.stderr,
        )
        if status == "FINISHED":
            raise


def _fit_tuner(settings, budget, data, fit, val, experiment_id, parent_id):
    """Wire search algorithm, scheduler and budget into a Tuner and run it."""
    from ray import tune

    metric, mode = settings.metric.value, settings.metric.mode
    searcher = make_searcher(settings.seed, budget.max_concurrent)
    scheduler = make_scheduler(budget.max_rounds)
    trainable = tune.with_resources(
        tune.with_parameters(
            run_trial,
            fit=fit,
            val=val,
            features=data.features,
            n_classes=len(data.classes),
            max_rounds=budget.max_rounds,
            seed=settings.seed,
            tracking_uri=settings.tracking_uri,
            experiment_id=experiment_id,
            parent_run_id=parent_id,
            http_env=tracking.http_env(settings),
        ),
        {"cpu": 1},
    )
    tuner = tune.Tuner(
        trainable,
        param_space=search_space(),
        tune_config=tune.TuneConfig(
            metric=metric,
            mode=mode,
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=budget.num_samples,
            time_budget_s=budget.time_budget_s,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=f"tune-{parent_id[:8]}",
            storage_path=str((settings.state_dir / "ray_results").resolve()),
            verbose=1,
            # one errored trial already makes the session partial (never registered), so
            # stop at once instead of failing every remaining trial against a dead MLflow
            failure_config=tune.FailureConfig(fail_fast=True),
            # trials done / total and best so far for the pipeline's progress bar
            callbacks=[
                progress_callback(progress_path(settings.run_dir), budget.num_samples, metric, mode)
            ],
        ),
    )
    return tuner.fit()
