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
import sys
import time
from typing import TYPE_CHECKING

from helper.errors import run_cli
from helper.settings import Settings, load_settings
from ml_platform import tracking
from ml_platform.budget import SMOKE_BUDGET, TuneBudget, budget_from_settings
from ml_platform.ray_session import ray_session

if TYPE_CHECKING:
    from ml_platform.results import TuneSummary

# Nothing heavy at module level: `python -m ml_platform.tune` starts Ray before it imports
# MLflow, XGBoost or Ray Tune (see run_tuning). The notebook and tests read a session's results
# through ml_platform.results.
__all__ = ["SMOKE_BUDGET", "TuneBudget", "budget_from_settings", "preflight", "run_tuning"]


def run_tuning(
    settings: Settings, budget: TuneBudget, launched_unix: float | None = None
) -> TuneSummary:
    """Run one session end to end; Ray is always shut down, the parent run always closed.

    Ray starts before this process imports what the session needs (`ml_platform.tune_session`:
    MLflow, pandas, XGBoost, Ray Tune), so Ray's idle workers import the trial's modules at the
    same time (see ml_platform.ray_session) and the first trial finds a warm worker.
    `launched_unix`: when the calling process started, to report the first trial's wait.
    """
    wall_started = time.perf_counter()
    with ray_session(
        budget.cpus, settings.ray_address, fast_start=settings.tune_fast_start
    ) as ray_start_s:
        from ml_platform import tune_session

        return tune_session.run(settings, budget, ray_start_s, wall_started, launched_unix)


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
        summary = run_tuning(settings, budget, launched_unix=_process_started_unix())
    except Exception as exc:  # noqa: BLE001 - one clear line instead of a long traceback
        print(f"error: tuning session failed: {tracking.one_line(exc)}", file=sys.stderr)
        return 1
    print(summary.as_text())
    return 0 if summary.best else 1


def _process_started_unix() -> float:
    """When this process started (interpreter start-up and imports included)."""
    import psutil

    return psutil.Process().create_time()


if __name__ == "__main__":
    run_cli(main)
