"""The product's search definition: report cadence, start point, ASHA rungs."""

from __future__ import annotations

import pytest

from ml_platform.search import ASHA_GRACE_ROUNDS, make_scheduler, make_searcher
from ml_platform.trial import REPORT_EVERY_ROUNDS, XGBOOST_DEFAULTS, search_space, should_report


def test_reports_every_k_rounds_and_never_the_last():
    rounds = [r for r in range(1, 61) if should_report(r, 60)]
    assert rounds == list(range(REPORT_EVERY_ROUNDS, 60, REPORT_EVERY_ROUNDS))
    assert not should_report(60, 60)


def test_xgboost_defaults_lie_inside_the_search_space():
    space = search_space()
    assert set(XGBOOST_DEFAULTS) == set(space)
    for name, value in XGBOOST_DEFAULTS.items():
        domain = space[name]
        low, high = domain.lower, domain.upper
        # Ray's randint excludes its upper bound; float ranges include it (Optuna's do)
        inside = low <= value < high if isinstance(value, int) else low <= value <= high
        assert inside, f"{name}={value} outside [{low}, {high}]"


@pytest.mark.parametrize("max_rounds", [8, 60])
def test_asha_counts_boosting_rounds_and_never_cuts_before_the_first_report(max_rounds):
    scheduler = make_scheduler(max_rounds)
    assert scheduler._time_attr == "round"
    assert scheduler._max_t == max_rounds
    milestones = sorted(m for bracket in scheduler._brackets for m, _ in bracket._rungs)
    assert milestones[0] == min(ASHA_GRACE_ROUNDS, max_rounds)
    # every rung is a round some report lands on, else ASHA would never compare trials there
    for m in milestones:
        assert m == max_rounds or (m % REPORT_EVERY_ROUNDS == 0 and m < max_rounds), milestones


def test_searcher_evaluates_xgboost_defaults_first():
    searcher = make_searcher(seed=1, max_concurrent=2)
    searcher.set_search_properties("accuracy", "max", search_space())
    first = searcher.suggest("t1")
    second = searcher.suggest("t2")
    assert first == XGBOOST_DEFAULTS
    assert second != XGBOOST_DEFAULTS
    assert searcher.suggest("t3") is None  # ConcurrencyLimiter: two live trials at most
