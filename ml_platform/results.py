"""What a tuning session produced: the trials table, the best trial, the summary.

Pure pandas over Tune's results plus one MLflow clean-up (`close_stopped_trials`), so the
notebook, the CLI and tests read a session the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ml_platform import tracking

METRICS = ("accuracy", "recall_macro", "log_loss")


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
    first_trial_s: float | None = None
    first_trial_from_launch_s: float | None = None

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
                f"tuning         {self.tune_s:.1f} s (first trial started at "
                f"{_seconds(self.first_trial_s)}{self._since_launch()})",
                f"wall time      {self.wall_s:.1f} s",
            ]
        )

    def _since_launch(self) -> str:
        s = self.first_trial_from_launch_s
        return "" if s is None else f", {s:.1f} s after the command started"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def first_trial_start_s(grid, since_unix: float) -> float | None:
    """Seconds from `since_unix` to the first trial function's start (its `started_at`
    report). From `Tuner.fit`: Tune's start-up cost, what `MLP_TUNE_FAST_START` shrinks;
    from the process's start: what a person running `ml:tune` waits."""
    starts = [r.metrics["started_at"] for r in grid if (r.metrics or {}).get("started_at")]
    return round(min(starts) - since_unix, 3) if starts else None


def best_so_far(trials: pd.DataFrame, metric: str, mode: str) -> pd.Series:
    """Running best of `metric` in trial start order: the curve a budget decision rests on."""
    ordered = trials.sort_values("start_order")[metric]
    return ordered.cummax() if mode == "max" else ordered.cummin()


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


def close_stopped_trials(client, experiment_id, parent_id, trials: pd.DataFrame) -> pd.DataFrame:
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
