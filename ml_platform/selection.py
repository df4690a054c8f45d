"""Which trial a registration takes: the decisions (pure, unit-tested) and the two MLflow
queries that feed them (the latest tuning session, its child runs).

Gate semantics: `min_metric` is the *worst acceptable value* of the metric: a floor when
higher is better (accuracy, recall_macro), a ceiling when lower is better (log_loss).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from helper.errors import PlatformError
from helper.settings import Metric
from ml_platform import tracking

TIE_BREAK_METRIC = "log_loss"


class RegistryRefusal(PlatformError, RuntimeError):
    """The registry declines to register; the message says why and what to change."""


@dataclass(frozen=True)
class Candidate:
    """A child run as the selection logic sees it."""

    run_id: str
    metrics: Mapping[str, float]
    model_id: str | None
    status: str
    start_time: int = 0


# --- decisions (pure) -------------------------------------------------------------------


def passes_gate(value: float, threshold: float, mode: str) -> bool:
    """`threshold` is the worst acceptable value: a floor for 'max', a ceiling for 'min'."""
    if mode not in ("max", "min"):
        raise ValueError(f"mode: expected 'max' or 'min', got {mode!r}")
    if not math.isfinite(value):
        return False
    return value >= threshold if mode == "max" else value <= threshold


def select_best(candidates: Iterable[Candidate], metric: str, mode: str) -> Candidate:
    """Best finished candidate with a logged model and a finite `metric`.

    Accuracy-like metrics tie often on small test sets, so ties are broken by the lower
    log-loss (the more confident correct model), then by the earlier run, so re-running the
    registry on the same session always picks the same run.
    """
    usable = [
        c
        for c in candidates
        if c.status == "FINISHED"
        and c.model_id
        and metric in c.metrics
        and math.isfinite(c.metrics[metric])
    ]
    if not usable:
        raise RegistryRefusal(
            f"no finished trial with a logged model and metric '{metric}' in the latest session"
        )
    sign = 1.0 if mode == "max" else -1.0

    def rank(c: Candidate) -> tuple:
        loss = c.metrics.get(TIE_BREAK_METRIC, math.inf)
        return (
            sign * c.metrics[metric],
            -loss if math.isfinite(loss) else -math.inf,
            -c.start_time,
            c.run_id,
        )

    return max(usable, key=rank)


def check_gate(candidate: Candidate, metric: Metric, threshold: float) -> None:
    """Raise `RegistryRefusal` naming the metric, the value and the threshold's meaning."""
    value = candidate.metrics[metric.value]
    if passes_gate(value, threshold, metric.mode):
        return
    relation = "below the floor" if metric.mode == "max" else "above the ceiling"
    raise RegistryRefusal(
        f"best {metric.value} {value:.4f} (run {candidate.run_id}) is {relation} "
        f"min_metric={threshold} ({metric.value} is a '{metric.mode}' metric; min_metric is "
        f"the worst acceptable value); not registering"
    )


def latest_session(client, experiment_id: str):
    """The newest parent run tagged `session=tune`, which must have FINISHED.

    Decision: a newer FAILED/KILLED/RUNNING session is never skipped in favour of an older
    complete one. Its trials ran on the newest data/code, so silently registering an older
    session's winner would mislead; the caller is told to rerun tuning instead.
    """
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.{tracking.SESSION_TAG} = '{tracking.SESSION_VALUE}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise RegistryRefusal(
            f"no finished tuning session in experiment {experiment_id}; run `task ml:tune` first"
        )
    if runs[0].info.status != "FINISHED":
        raise RegistryRefusal(
            f"latest tuning session {runs[0].info.run_id} is {runs[0].info.status}, not "
            "FINISHED; a partial session is never registered; rerun `task ml:tune`"
        )
    return runs[0]


def session_candidates(client, experiment_id: str, parent_run_id: str) -> list[Candidate]:
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{tracking.PARENT_TAG}` = '{parent_run_id}'",
        max_results=1000,
    )
    return [
        Candidate(
            run_id=r.info.run_id,
            metrics=dict(r.data.metrics),
            model_id=r.data.tags.get(tracking.MODEL_ID_TAG),
            status=r.info.status,
            start_time=r.info.start_time or 0,
        )
        for r in runs
    ]
