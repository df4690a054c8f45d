"""Hyper-parameter search: Ray Tune over XGBClassifier, every trial tracked in MLflow.

One tuning session = one parent MLflow run (tag `session=tune`); each trial creates its own
child run (tag `mlflow.parentRunId`) from inside its Ray worker, over HTTP only. Trials report
every few boosting rounds so ASHA can stop weak configurations early; Optuna's TPE evaluates
XGBoost's own defaults first (`points_to_evaluate`), then proposes the next configuration
from the finished ones. `make_searcher` / `make_scheduler` are the one definition of the
search, shared with the tuning benchmark.

CLI: `python -m ml_platform.tune [--smoke] [--num-samples N] [--max-concurrent N]
[--time-budget-s S] [--max-rounds N]`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import time
from dataclasses import dataclass

from helper.errors import run_cli
from helper.settings import Settings, load_settings
from ml_platform import tracking
from ml_platform.data import load_lake, split_validation
from ml_platform.progress import progress_callback, progress_path
from ml_platform.results import (
    TuneSummary,
    best_so_far,
    close_stopped_trials,
    pick_best_trial,
    trials_frame,
)
from ml_platform.trial import REPORT_EVERY_ROUNDS, XGBOOST_DEFAULTS, run_trial, search_space

# the notebook and tests reach the session helpers through this module
__all__ = [
    "SMOKE_BUDGET",
    "TuneBudget",
    "TuneSummary",
    "best_so_far",
    "budget_from_settings",
    "make_scheduler",
    "make_searcher",
    "pick_best_trial",
    "preflight",
    "run_tuning",
    "trials_frame",
]
# ASHA's rungs are in boosting rounds (the reported `round`, not Tune's report count). On
# small data the early rounds rank configurations poorly (a low learning rate looks bad at
# round 5 and wins at 60), so the first cut waits 15 rounds and each rung keeps half.
ASHA_TIME_ATTR = "round"
ASHA_GRACE_ROUNDS = 15
ASHA_REDUCTION = 2
RAY_OBJECT_STORE_BYTES = 150 * 1024 * 1024  # iris-sized data; keeps /dev/shm use small
RAY_START_ATTEMPTS = 3


class TuningFailed(RuntimeError):
    """The session could not complete (trials errored, or MLflow went away); the parent run
    is marked FAILED when the server can still be reached."""


@dataclass(frozen=True)
class TuneBudget:
    """How much search a session may spend."""

    num_samples: int
    max_concurrent: int
    time_budget_s: float
    cpus: int
    max_rounds: int

    def __post_init__(self) -> None:
        for name in ("num_samples", "max_concurrent", "cpus", "max_rounds"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.time_budget_s <= 0:
            raise ValueError(f"time_budget_s: must be > 0, got {self.time_budget_s}")


# Enough to prove the whole path (search, scheduler, parent/child runs, model logging).
SMOKE_BUDGET = dict(num_samples=2, max_concurrent=2, time_budget_s=120.0, max_rounds=8)


def budget_from_settings(settings: Settings, smoke: bool = False, **overrides) -> TuneBudget:
    """Settings' budget, shrunk for `--smoke`, then any explicit CLI overrides (None = unset)."""
    values = dict(
        num_samples=settings.tune_num_samples,
        max_concurrent=settings.tune_max_concurrent,
        time_budget_s=settings.tune_time_budget_s,
        cpus=settings.tune_cpus,
        max_rounds=settings.tune_max_rounds,
    )
    if smoke:
        values.update(SMOKE_BUDGET)
    values.update({k: v for k, v in overrides.items() if v is not None})
    # one CPU per trial: more concurrent trials than CPUs would only queue
    values["max_concurrent"] = min(values["max_concurrent"], values["cpus"])
    return TuneBudget(**values)


def start_ray(cpus: int, address: str | None = None, attempts: int = RAY_START_ATTEMPTS) -> float:
    """Start a private local Ray with a fixed small resource set (or, inside a RayJob, connect
    to `address`); returns seconds taken.

    Ray 2.60's raylet aborts when its agents take longer than a fixed window to report their
    ports, which happens on a busy 2-core machine while the agents import cold. The next
    attempt imports from a warm page cache, so a retry turns a flaky start into a slow one.
    """
    # Under `uv run` (the Taskfiles), Ray 2.60 otherwise packages the whole working directory,
    # .venv included (~2 GB), into /tmp/ray for every session; workers share this interpreter
    # anyway. Read when ray is first imported, hence before the import.
    too_late = "ray" in sys.modules and "RAY_ENABLE_UV_RUN_RUNTIME_ENV" not in os.environ
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    import ray

    if too_late and "UV" in os.environ:
        # ray was imported before this function: every worker (and so every Tune actor)
        # then starts through `uv run` in a freshly built venv, tens of seconds each
        print(
            "warning: ray was imported before start_ray(); set RAY_ENABLE_UV_RUN_RUNTIME_ENV=0 "
            "or import ray later, else each Ray worker builds its own venv",
            file=sys.stderr,
        )

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started = time.perf_counter()
    if address:
        ray.init(address=address, logging_level="WARNING", log_to_driver=True)
        return time.perf_counter() - started
    for attempt in range(1, attempts + 1):
        try:
            ray.init(
                num_cpus=cpus,
                num_gpus=0,
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
                object_store_memory=RAY_OBJECT_STORE_BYTES,
                logging_level="WARNING",
                log_to_driver=True,
            )
            return time.perf_counter() - started
        except Exception as exc:  # Ray raises a bare Exception for a node start timeout
            ray.shutdown()
            _reap_failed_ray_start()
            if attempt == attempts or "timed out during startup" not in str(exc):
                raise
            print(f"ray start attempt {attempt} timed out; retrying", file=sys.stderr)
    raise AssertionError("unreachable")


_RAY_NODE_PROCESSES = ("gcs_server", "raylet", "dashboard/agent.py", "runtime_env/agent")


def _reap_failed_ray_start() -> None:
    """Stop the Ray processes a failed `ray.init` left behind (it leaves its GCS running).

    Only children of this process are touched: another user's Ray is never affected.
    """
    import psutil

    leftovers = []
    for child in psutil.Process().children(recursive=True):
        try:
            cmdline = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if any(marker in cmdline for marker in _RAY_NODE_PROCESSES):
            leftovers.append(child)
    for proc in leftovers:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(leftovers, timeout=5)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()


def run_tuning(settings: Settings, budget: TuneBudget) -> TuneSummary:
    """Run one session end to end; Ray is always shut down, the parent run always closed."""
    from mlflow.tracking import MlflowClient

    wall_started = time.perf_counter()
    data = load_lake(settings)
    fit, val = split_validation(data.train, seed=settings.seed)
    client = MlflowClient(settings.tracking_uri)
    experiment_id = tracking.ensure_experiment(client, settings.experiment_name)
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
    parent_id = parent.info.run_id
    tracking.log_params(
        client,
        parent_id,
        {
            **dataclasses.asdict(budget),
            "fit_rows": len(fit),
            "validation_rows": len(val),
            "test_rows": len(data.test),
        },
    )
    status = "FAILED"
    ray_start_s = tune_s = 0.0
    try:
        ray_start_s = start_ray(budget.cpus, settings.ray_address)
        tune_started = time.perf_counter()
        grid = _fit_tuner(settings, budget, data, fit, val, experiment_id, parent_id)
        tune_s = time.perf_counter() - tune_started
        trials = trials_frame(grid)
        trials = close_stopped_trials(client, experiment_id, parent_id, trials)
        _raise_on_trial_errors(grid)
        best = pick_best_trial(trials, settings.metric.value, settings.metric.mode)
        if best:
            tracking.log_metrics(
                client, parent_id, {f"best_{settings.metric.value}": best[settings.metric.value]}
            )
            client.set_tag(parent_id, "best_run_id", best.get("run_id") or "")
        status = "FINISHED"
    finally:
        import ray

        ray.shutdown()
        wall_s = time.perf_counter() - wall_started
        _close_parent(
            client,
            parent_id,
            status,
            {"ray_start_s": ray_start_s, "tune_s": tune_s, "wall_s": wall_s},
        )
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
    )


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


def make_searcher(seed: int, max_concurrent: int):
    """Optuna TPE, XGBoost's defaults evaluated first, at most `max_concurrent` trials live."""
    from optuna.samplers import TPESampler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    return ConcurrencyLimiter(
        OptunaSearch(sampler=TPESampler(seed=seed), points_to_evaluate=[dict(XGBOOST_DEFAULTS)]),
        max_concurrent=max_concurrent,
    )


def make_scheduler(max_rounds: int):
    """ASHA over boosting rounds; rungs snap to the report cadence (`REPORT_EVERY_ROUNDS`)."""
    from ray.tune.schedulers import ASHAScheduler

    grace = min(max(ASHA_GRACE_ROUNDS, REPORT_EVERY_ROUNDS), max_rounds)
    return ASHAScheduler(
        time_attr=ASHA_TIME_ATTR,
        max_t=max_rounds,
        grace_period=grace,
        reduction_factor=ASHA_REDUCTION,
    )


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
    import requests

    problems = [p for p in (settings.state_dir_problem(),) if p]  # Tune's storage_path
    try:
        requests.get(f"{settings.tracking_uri}/health", timeout=5).raise_for_status()
    except requests.RequestException as exc:
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
