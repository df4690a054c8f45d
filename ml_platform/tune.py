"""Hyper-parameter search: Ray Tune over XGBClassifier, every trial tracked in MLflow.

One tuning session = one parent MLflow run (tag `session=tune`); each trial creates its own
child run (tag `mlflow.parentRunId`) from inside its Ray worker, over HTTP only. Trials report
every few boosting rounds so ASHA can stop weak configurations early; Optuna's TPE evaluates
XGBoost's own defaults first (`points_to_evaluate`), then proposes the next configuration
from the finished ones. The search is defined in `ml_platform.search` (shared with the tuning
benchmark); Ray's start and stop in `ml_platform.ray_session`.

CLI: `python -m ml_platform.tune [--smoke] [--num-samples N] [--max-concurrent N]
[--time-budget-s S] [--max-rounds N]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from helper.errors import run_cli
from helper.settings import Settings, load_settings
from ml_platform import tracking
from ml_platform.budget import SMOKE_BUDGET, TuneBudget, budget_from_settings
from ml_platform.data import load_lake, split_validation
from ml_platform.progress import progress_callback, progress_path
from ml_platform.ray_session import ray_session
from ml_platform.results import (
    TuneSummary,
    best_so_far,
    close_stopped_trials,
    first_trial_start_s,
    pick_best_trial,
    trials_frame,
)
from ml_platform.search import make_scheduler, make_searcher
from ml_platform.trial import run_trial, search_space

# the notebook and tests reach the session helpers through this module
__all__ = [
    "SMOKE_BUDGET",
    "TuneBudget",
    "TuneSummary",
    "best_so_far",
    "budget_from_settings",
    "pick_best_trial",
    "preflight",
    "run_tuning",
    "trials_frame",
]


class TuningFailed(RuntimeError):
    """The session could not complete (trials errored, or MLflow went away); the parent run
    is marked FAILED when the server can still be reached."""


def run_tuning(settings: Settings, budget: TuneBudget) -> TuneSummary:
    """Run one session end to end; Ray is always shut down, the parent run always closed.

    Ray starts first: its idle workers import what a trial needs (see ml_platform.ray_session)
    while this process loads the lake and opens the parent run.
    """
    from mlflow.tracking import MlflowClient

    wall_started = time.perf_counter()
    with ray_session(
        budget.cpus, settings.ray_address, fast_start=settings.tune_fast_start
    ) as ray_start_s:
        data = load_lake(settings)
        fit, val = split_validation(data.train, seed=settings.seed)
        client = MlflowClient(settings.tracking_uri)
        experiment_id = tracking.ensure_experiment(client, settings.experiment_name)
        parent_id = _open_parent(client, experiment_id, settings, budget, data, fit, val)
        status, tune_s, first_trial_s = "FAILED", 0.0, None
        try:
            tune_started = time.perf_counter()
            started_unix = time.time()
            grid = _fit_tuner(settings, budget, data, fit, val, experiment_id, parent_id)
            tune_s = time.perf_counter() - tune_started
            first_trial_s = first_trial_start_s(grid, started_unix)
            trials, best = _collect_trials(client, settings, experiment_id, parent_id, grid)
            status = "FINISHED"
        finally:
            wall_s = time.perf_counter() - wall_started
            timings = {"ray_start_s": ray_start_s, "tune_s": tune_s, "wall_s": wall_s}
            if first_trial_s is not None:
                timings["first_trial_start_s"] = first_trial_s
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
        first_trial_s=first_trial_s,
    )


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


def preflight(settings: Settings, need_lake: bool = True) -> list[str]:
    """Problems that would make a session fail late (after Ray's slow start), found early."""
    import httpx

    problems = [p for p in (settings.state_dir_problem(),) if p]  # Tune's storage_path
    try:
        httpx.get(f"{settings.tracking_uri}/health", timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        problems.append(
            f"tracking_uri: MLflow at {settings.tracking_uri} does not answer "
            f"({exc.__class__.__name__}); run `task local:up`"
        )
    if need_lake:
        try:
            from data_platform.lake import latest_manifest

            latest_manifest(settings.lake_uri, settings.dataset.name, settings=settings)
        except Exception as exc:  # any reason the lake is unreadable is worth one line
            problems.append(f"lake_uri: {exc}")
    return problems


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ml_platform.tune", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only check MLflow and the lake")
    parser.add_argument("--smoke", action="store_true", help="tiny budget for tests")
    parser.add_argument("--num-samples", type=int)
    parser.add_argument("--max-concurrent", type=int)
    parser.add_argument("--time-budget-s", type=float)
    parser.add_argument("--max-rounds", type=int)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    settings = load_settings()
    # before any MLflow call, and before Ray starts so its local workers inherit it too
    tracking.apply_http_env(tracking.http_env(settings))
    try:
        budget = budget_from_settings(
            settings,
            smoke=args.smoke,
            num_samples=args.num_samples,
            max_concurrent=args.max_concurrent,
            time_budget_s=args.time_budget_s,
            max_rounds=args.max_rounds,
        )
    except ValueError as exc:  # a CLI flag overriding a tune_* setting
        print(f"invalid setting {exc}", file=sys.stderr)
        return 2
    problems = preflight(settings)
    if problems or args.check:
        print(
            "\n".join(problems) or "ok: MLflow answers and the lake has a published version",
            file=sys.stderr if problems else sys.stdout,
        )
        return 1 if problems else 0
    try:
        summary = run_tuning(settings, budget)
    except Exception as exc:  # noqa: BLE001 - one clear line instead of a long traceback
        print(f"error: tuning session failed: {tracking.one_line(exc)}", file=sys.stderr)
        return 1
    print(summary.as_text())
    return 0 if summary.best else 1


if __name__ == "__main__":
    run_cli(main)
