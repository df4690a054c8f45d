"""Hyper-parameter search: Ray Tune over XGBClassifier, every trial tracked in MLflow.

One tuning session = one parent MLflow run (tag `session=tune`); each trial creates its own
child run (tag `mlflow.parentRunId`) from inside its Ray worker, over HTTP only. Trials report
after every boosting round so ASHA can stop weak configurations early; Optuna's TPE proposes
the next configuration from the finished ones.

CLI: `python -m ml_platform.tune [--smoke] [--num-samples N] [--max-concurrent N]
[--time-budget-s S] [--max-rounds N]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from dataclasses import dataclass

import pandas as pd

from helper.settings import Settings, load_settings
from ml_platform import tracking
from ml_platform.data import load_lake, split_validation
from ml_platform.train import train_model

METRICS = ("accuracy", "recall_macro", "log_loss")
ASHA_GRACE_ROUNDS = 5
ASHA_REDUCTION = 3
RAY_OBJECT_STORE_BYTES = 150 * 1024 * 1024  # iris-sized data; keeps /dev/shm use small
RAY_START_ATTEMPTS = 3


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


@dataclass
class TuneSummary:
    """What a session produced; `trials` has one row per trial."""

    parent_run_id: str
    experiment_id: str
    metric: str
    mode: str
    trials: pd.DataFrame
    best: dict
    ray_start_s: float
    tune_s: float
    wall_s: float

    def as_text(self) -> str:
        best = self.best
        return "\n".join(
            [
                f"parent run     {self.parent_run_id} (experiment {self.experiment_id})",
                f"trials         {len(self.trials)} "
                f"({int((self.trials['status'] == 'FINISHED').sum())} finished, "
                f"{int(self.trials['stopped_early'].sum())} stopped early)",
                f"best {self.metric:<9} {best.get(self.metric, float('nan')):.4f} "
                f"(trial {best.get('trial_id', '-')}, run {best.get('run_id', '-')})",
                f"ray start      {self.ray_start_s:.1f} s",
                f"tuning         {self.tune_s:.1f} s",
                f"wall time      {self.wall_s:.1f} s",
            ]
        )


def best_so_far(trials: pd.DataFrame, metric: str, mode: str) -> pd.Series:
    """Running best of `metric` in trial start order: the curve a budget decision rests on."""
    ordered = trials.sort_values("start_order")[metric]
    return ordered.cummax() if mode == "max" else ordered.cummin()


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
) -> None:
    """One trial inside a Ray worker: child run, per-round reports, model logged at the end.

    The last round is reported only after the run is complete, because ASHA stops a trial
    that reaches `max_t` and stopping ends this function at its next `tune.report`.
    """
    from mlflow.tracking import MlflowClient
    from ray import tune

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
            if round_no < max_rounds:
                tune.report({**metrics, "round": round_no})

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
    tune.report({**result.metrics, "round": max_rounds})


def _log_model(tracking_uri: str, run_id: str, model, features_frame: pd.DataFrame) -> str:
    """Log the fitted classifier under the child run; returns the MLflow 3 model id."""
    import mlflow
    import mlflow.xgboost
    from mlflow.models import infer_signature

    mlflow.set_tracking_uri(tracking_uri)
    example = features_frame.head(5)
    signature = infer_signature(example, model.predict(example))
    with mlflow.start_run(run_id=run_id):
        info = mlflow.xgboost.log_model(
            model,
            name="model",
            signature=signature,
            input_example=example,
            pip_requirements=tracking.model_pip_requirements(),
        )
    return info.model_id


def start_ray(cpus: int, attempts: int = RAY_START_ATTEMPTS) -> float:
    """Start a private local Ray with a fixed small resource set; returns seconds taken.

    Ray 2.60's raylet aborts when its agents take longer than a fixed window to report their
    ports, which happens on a busy 2-core machine while the agents import cold. The second
    attempt imports from a warm page cache, so one retry turns a flaky start into a slow one.
    """
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started = time.perf_counter()
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
            if attempt == attempts or "timed out during startup" not in str(exc):
                raise
            print(f"ray start attempt {attempt} timed out; retrying", file=sys.stderr)
    raise AssertionError("unreachable")


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
        ray_start_s = start_ray(budget.cpus)
        tune_started = time.perf_counter()
        grid = _fit_tuner(settings, budget, data, fit, val, experiment_id, parent_id)
        tune_s = time.perf_counter() - tune_started
        trials = trials_frame(grid)
        trials = _close_stopped_trials(client, experiment_id, parent_id, trials)
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
        tracking.log_metrics(
            client, parent_id, {"ray_start_s": ray_start_s, "tune_s": tune_s, "wall_s": wall_s}
        )
        client.set_terminated(parent_id, status)
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


def _fit_tuner(settings, budget, data, fit, val, experiment_id, parent_id):
    """Wire search algorithm, scheduler and budget into a Tuner and run it."""
    from optuna.samplers import TPESampler
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    metric, mode = settings.metric.value, settings.metric.mode
    searcher = ConcurrencyLimiter(
        OptunaSearch(sampler=TPESampler(seed=settings.seed)),
        max_concurrent=budget.max_concurrent,
    )
    scheduler = ASHAScheduler(
        time_attr="training_iteration",
        max_t=budget.max_rounds,
        grace_period=min(ASHA_GRACE_ROUNDS, budget.max_rounds),
        reduction_factor=ASHA_REDUCTION,
    )
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
        ),
    )
    return tuner.fit()


def trials_frame(grid) -> pd.DataFrame:
    """One row per trial: id, status, last reported metrics, rounds done, config."""
    rows = []
    for order, result in enumerate(grid):
        metrics = result.metrics or {}
        rows.append(
            {
                "trial_id": metrics.get("trial_id", result.path.rsplit("_", 1)[-1]),
                "start_order": order,
                "status": "ERROR" if result.error else "FINISHED",
                "rounds": int(metrics.get("round", 0)),
                **{m: metrics.get(m, float("nan")) for m in METRICS},
                **{f"config/{k}": v for k, v in (result.config or {}).items()},
            }
        )
    return pd.DataFrame(rows)


def _close_stopped_trials(client, experiment_id, parent_id, trials: pd.DataFrame) -> pd.DataFrame:
    """Close the child runs of trials the scheduler stopped (their function never returned):
    record the last reported metrics, mark them KILLED, and note the run id per trial."""
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`{tracking.PARENT_TAG}` = '{parent_id}'"
    )
    by_trial = {r.data.tags.get(tracking.TRIAL_TAG): r for r in runs}
    trials = trials.copy()
    run_ids, stopped = [], []
    for row in trials.itertuples(index=False):
        run = by_trial.get(row.trial_id)
        run_ids.append(run.info.run_id if run else None)
        early = bool(run and run.info.status == "RUNNING")
        if early:
            last = {m: getattr(row, m) for m in METRICS if pd.notna(getattr(row, m))}
            tracking.log_metrics(client, run.info.run_id, last, step=row.rounds)
            client.set_tag(run.info.run_id, tracking.STOPPED_TAG, "true")
            client.set_terminated(run.info.run_id, "KILLED")
        stopped.append(early)
    trials["run_id"] = run_ids
    trials["stopped_early"] = stopped
    trials.loc[trials["stopped_early"], "status"] = "STOPPED"
    return trials


def pick_best_trial(trials: pd.DataFrame, metric: str, mode: str) -> dict:
    """Best finished trial by `metric` (stopped trials have no model, so they cannot win).

    Same order as the registry's `select_best`: ties go to the lower log-loss, then to the
    earlier trial, so the summary names the run that `ml_platform.register` will pick.
    """
    done = trials[(trials["status"] == "FINISHED") & trials[metric].notna()]
    if done.empty:
        return {}
    keys, ascending = [metric], [mode == "min"]
    if metric != "log_loss" and "log_loss" in done:
        keys, ascending = [*keys, "log_loss"], [*ascending, True]
    ranked = done.sort_values([*keys, "start_order"], ascending=[*ascending, True])
    return ranked.iloc[0].to_dict()


def preflight(settings: Settings, need_lake: bool = True) -> list[str]:
    """Problems that would make a session fail late (after Ray's slow start), found early."""
    import requests

    problems = []
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
    problems = preflight(settings)
    if problems or args.check:
        print(
            "\n".join(problems) or "ok: MLflow answers and the lake has a published version",
            file=sys.stderr if problems else sys.stdout,
        )
        return 1 if problems else 0
    try:
        budget = budget_from_settings(
            settings,
            smoke=args.smoke,
            num_samples=args.num_samples,
            max_concurrent=args.max_concurrent,
            time_budget_s=args.time_budget_s,
            max_rounds=args.max_rounds,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = run_tuning(settings, budget)
    print(summary.as_text())
    return 0 if summary.best else 1


if __name__ == "__main__":
    sys.exit(main())
