"""Part 4 — tuning: our search vs the original project's configuration, on sklearn's digits.

Ours: Optuna's TPE (ConcurrencyLimiter) + ASHA fed per-round reports — ml_platform.tune's
search space, scheduler constants and trainer. Original: random search, 20 trials, no
early stopping (each trial reports once, at the end). Both run in the same Ray session, with
the same data split, rounds, CPUs and concurrency, and without MLflow, so the figures
measure the search. Only trials that ran to completion count towards best-so-far: a stopped
trial leaves no model that could be registered.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from bench.context import BenchContext

ORIGINAL_TRIALS = 20
SMOKE = {"trials": 3, "max_rounds": 4}


def digits_split(seed: int) -> tuple[pd.DataFrame, pd.DataFrame, list[str], int]:
    """(fit, validation, features, n_classes): 8x8 digits, 10 classes, stratified 75/25."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    features = [f"px{i}" for i in range(bunch.data.shape[1])]
    frame = pd.DataFrame(bunch.data.astype("float64"), columns=features)
    frame["label"] = bunch.target.astype("int32")
    fit, val = train_test_split(frame, test_size=0.25, random_state=seed, stratify=frame["label"])
    return fit.reset_index(drop=True), val.reset_index(drop=True), features, 10


def trainable(config, *, fit, val, features, n_classes, max_rounds, seed, per_round):
    """One trial: the platform's trainer; per-round reports only when a scheduler uses them."""
    from ray import tune

    from ml_platform.train import train_model

    started = time.perf_counter()

    def report(round_no: int, metrics: dict) -> None:
        if per_round and round_no < max_rounds:
            tune.report({**metrics, "round": round_no, "train_s": time.perf_counter() - started})

    result = train_model(
        config, fit, val, features, n_classes, max_rounds, seed=seed, on_round=report
    )
    tune.report(
        {
            **result.metrics,
            "round": max_rounds,
            "train_s": time.perf_counter() - started,
            "completed": 1,
            "finished_at": time.time(),
        }
    )


def _tuner(name: str, trials: int, max_rounds: int, cpus: int, seed: int, data, storage):
    from optuna.samplers import TPESampler
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from ml_platform.tune import ASHA_GRACE_ROUNDS, ASHA_REDUCTION, search_space

    fit, val, features, n_classes = data
    ours = name == "ours"
    if ours:
        search = ConcurrencyLimiter(
            OptunaSearch(sampler=TPESampler(seed=seed)), max_concurrent=cpus
        )
        scheduler = ASHAScheduler(
            time_attr="training_iteration",
            max_t=max_rounds,
            grace_period=min(ASHA_GRACE_ROUNDS, max_rounds),
            reduction_factor=ASHA_REDUCTION,
        )
    else:
        search = BasicVariantGenerator(random_state=seed, max_concurrent=cpus)
        scheduler = None  # FIFO: every trial runs all its rounds
    fn = tune.with_parameters(
        trainable, fit=fit, val=val, features=features, n_classes=n_classes,
        max_rounds=max_rounds, seed=seed, per_round=ours,
    )  # fmt: skip
    return tune.Tuner(
        tune.with_resources(fn, {"cpu": 1}),
        param_space=search_space(),
        tune_config=tune.TuneConfig(
            metric="accuracy",
            mode="max",
            search_alg=search,
            scheduler=scheduler,
            num_samples=trials,
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(name=f"bench-{name}", storage_path=str(storage), verbose=0),
    )


def summarize(grid, started_unix: float, wall_s: float, cpus: int) -> dict:
    """Best-so-far curve over completed trials, counts, and Tune's per-trial overhead."""
    rows = []
    for result in grid:
        m = result.metrics or {}
        rows.append(
            {
                "accuracy": m.get("accuracy", float("nan")),
                "completed": bool(m.get("completed")),
                "train_s": float(m.get("train_s", 0.0)),
                "at_s": (m["finished_at"] - started_unix) if m.get("finished_at") else None,
                "error": bool(result.error),
            }
        )
    done = sorted((r for r in rows if r["completed"]), key=lambda r: r["at_s"])
    curve, best = [], -np.inf
    for r in done:
        best = max(best, r["accuracy"])
        curve.append((round(r["at_s"], 3), round(float(best), 5)))
    n = len(rows)
    busy = sum(r["train_s"] for r in rows)
    return {
        "trials": n,
        "completed": len(done),
        "stopped_early": sum(1 for r in rows if not r["completed"] and not r["error"]),
        "errors": sum(1 for r in rows if r["error"]),
        "best_accuracy": curve[-1][1] if curve else None,
        "wall_s": round(wall_s, 3),
        "best_so_far": curve,
        "train_s_total": round(busy, 3),
        # Slot-seconds the CPUs spent outside the training function, per trial.
        "tune_overhead_per_trial_s": round((wall_s * cpus - busy) / n, 3) if n else None,
    }


def time_to_reach(curve: list[tuple[float, float]], target: float | None) -> float | None:
    if target is None:
        return None
    return next((t for t, acc in curve if acc >= target - 1e-12), None)


def run(ctx: BenchContext) -> dict:
    import ray

    from ml_platform.tune import start_ray

    s = ctx.settings
    trials = SMOKE["trials"] if ctx.smoke else ORIGINAL_TRIALS
    max_rounds = SMOKE["max_rounds"] if ctx.smoke else s.tune_max_rounds
    cpus = s.tune_cpus
    data = digits_split(s.seed)
    out = {
        "dataset": "sklearn digits (1797 rows, 64 features, 10 classes)",
        "trials_each": trials,
        "max_rounds": max_rounds,
        "cpus": cpus,
        "searches": {},
    }
    labels = {
        "ours": "Optuna TPE + ASHA (per-round reports)",
        "original": "random search, no early stopping",
    }
    try:  # a Ray that failed half-way through start-up is shut down too
        out["ray_start_s"] = round(start_ray(cpus), 2)
        for name in ("original", "ours"):
            tuner = _tuner(name, trials, max_rounds, cpus, s.seed, data, ctx.work_dir / "ray")
            started_unix, t0 = time.time(), time.perf_counter()
            grid = tuner.fit()
            summary = summarize(grid, started_unix, time.perf_counter() - t0, cpus)
            summary["label"] = labels[name]
            out["searches"][name] = summary
            ctx.log(
                f"  tuning {name:<8} best {summary['best_accuracy']} in {summary['wall_s']:.1f} s "
                f"({summary['completed']} completed, {summary['stopped_early']} stopped)"
            )
    finally:
        ray.shutdown()
    orig, ours = out["searches"]["original"], out["searches"]["ours"]
    ours["time_to_reach_original_best_s"] = time_to_reach(
        ours["best_so_far"], orig["best_accuracy"]
    )
    columns = ["search", "trials", "completed", "stopped early", "best accuracy", "wall s",
               "reach original best s", "Tune overhead s/trial"]  # fmt: skip
    rows = [
        [f"{k} ({labels[k]})", v["trials"], v["completed"], v["stopped_early"],
         f"{v['best_accuracy']:.4f}" if v["best_accuracy"] is not None else "-",
         f"{v['wall_s']:.1f}",
         f"{v['time_to_reach_original_best_s']:.1f}"
         if v.get("time_to_reach_original_best_s") is not None else "-",
         v["tune_overhead_per_trial_s"]]
        for k, v in out["searches"].items()
    ]  # fmt: skip
    out["note"] = f"Ray start {out['ray_start_s']} s (not in either wall time)."
    out["table"] = {"columns": columns, "rows": rows}
    return out
