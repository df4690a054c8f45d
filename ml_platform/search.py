"""The search itself, one definition shared by tuning sessions and the tuning benchmark:
Optuna TPE starting from XGBoost's defaults, and ASHA over boosting rounds."""

from __future__ import annotations

from ml_platform.trial import REPORT_EVERY_ROUNDS, XGBOOST_DEFAULTS

# ASHA's rungs are in boosting rounds (the reported `round`, not Tune's report count). On
# small data the early rounds rank configurations poorly (a low learning rate looks bad at
# round 5 and wins at 60), so the first cut waits 15 rounds and each rung keeps half.
ASHA_TIME_ATTR = "round"
ASHA_GRACE_ROUNDS = 15
ASHA_REDUCTION = 2


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
