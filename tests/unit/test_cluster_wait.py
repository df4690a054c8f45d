"""helper.cluster_wait: a wait ends on the first terminal status, failure included."""

from __future__ import annotations

import pytest

from helper import cluster_wait as cw

RAY_OK, RAY_FAIL = ["Complete/SUCCEEDED"], ["Failed/*", "*/FAILED", "*/STOPPED"]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _wait(statuses, success, failure, timeout=600.0):
    clock, seen = Clock(), iter(statuses)
    outcome = cw.wait(
        lambda: next(seen, statuses[-1]), success, failure, timeout, 10.0,
        sleep=clock.sleep, clock=clock, report=lambda _: None,
    )  # fmt: skip
    return outcome


@pytest.mark.parametrize(
    ("statuses", "result", "status"),
    [
        (
            ["", "Initializing/", "Running/RUNNING", "Complete/SUCCEEDED"],
            "success",
            "Complete/SUCCEEDED",
        ),
        (["Running/RUNNING", "Complete/FAILED"], "failure", "Complete/FAILED"),
        (["Running/RUNNING", "Failed/RUNNING"], "failure", "Failed/RUNNING"),  # DeadlineExceeded
        (["Running/RUNNING", "Complete/STOPPED"], "failure", "Complete/STOPPED"),
    ],
)
def test_rayjob_statuses(statuses, result, status):
    outcome = _wait(statuses, RAY_OK, RAY_FAIL)
    assert (outcome.result, outcome.status) == (result, status)
    assert outcome.waited_s == 10.0 * (len(statuses) - 1)  # no extra poll after the verdict


def test_spark_failure_ends_the_wait_long_before_the_timeout():
    outcome = _wait(["Unknown", "Pending", "Running", "Failed"], ["Succeeded"], ["Failed"])
    assert outcome.result == "failure" and outcome.waited_s == 30.0


def test_timeout_is_bounded_and_read_errors_are_retried():
    outcome = _wait([None, "Running"], ["Succeeded"], ["Failed"], timeout=95.0)
    assert outcome.result == "timeout" and outcome.status == "Running"
    assert outcome.waited_s == 95.0


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800), ("90s", 90), ("1h5m", 3900)])
def test_durations(text, seconds):
    assert cw.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "5 minutes", "m"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        cw.parse_duration(text)
