"""Progressive canary analysis on live metrics: step the weight up, query Prometheus, decide.

Flagger's loop, for a target that can set a canary share: canary at `stepWeight` → wait
`interval` → evaluate every metric check of the spec against Prometheus → all passed: next
step (up to `maxWeight`, then promote); any failed: one failed check, the weight stays;
`threshold` failed checks: roll back. "No data" fails a check (a dead canary reports
nothing). The analysis never times its own requests: where no user traffic flows, a
bounded load step (`ReplayLoad`) replays the held-out split through the public endpoint
and the predictors' own metrics are what is judged — the same queries a cluster runs on
real users' traffic.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from inference_service import loadgen
from inference_service.promotion.gates import Check
from inference_service.promotion.prom import Prometheus, PromQLError
from inference_service.promotion.spec import (
    PLACEHOLDERS,
    AnalysisSpec,
    AnalysisSpecError,
    metric_names,
    promql_duration,
)


def v2_body(features: Sequence[str], row: Sequence[float]) -> dict:
    """Open Inference Protocol v2 request for one row, one named input per feature
    (the same shape as inference_service/input.json)."""
    return {
        "inputs": [
            {"name": f, "shape": [1], "datatype": "FP32", "data": [float(v)]}
            for f, v in zip(features, row, strict=True)
        ],
        "parameters": {"content_type": "pd"},
    }


# --- checks ---------------------------------------------------------------------------------


def validate_queries(spec: AnalysisSpec, prom: Prometheus, settle_s: float = 0.0) -> None:
    """Every query parses and names only metrics Prometheus has, before any traffic moves.

    A metric still missing after `settle_s` (a Prometheus that just started has not
    scraped yet) is unknown. Raises AnalysisSpecError naming the field (`metrics[i].query`)."""
    wanted = set().union(*(metric_names(c.query) for c in spec.metrics))
    deadline = time.monotonic() + settle_s
    known = prom.metric_names()
    while not wanted <= known and time.monotonic() < deadline:
        time.sleep(0.5)
        known = prom.metric_names()
    sample = dict.fromkeys(PLACEHOLDERS, "validation")
    sample |= {"interval": "1m", "elapsed": "1m"}
    for i, check in enumerate(spec.metrics):
        where = f"analysis spec metrics[{i}].query ({check.name})"
        missing = sorted(metric_names(check.query) - known)
        if missing:
            raise AnalysisSpecError(
                f"{where}: unknown metric '{missing[0]}' (no scraped target exports it)"
            )
        try:
            prom.query(check.render(sample))
        except PromQLError as exc:
            raise AnalysisSpecError(f"{where}: bad PromQL: {exc}") from None


def wait_observed(prom: Prometheus, revision: str, timeout_s: float, poll_s: float = 0.5) -> None:
    """Until Prometheus holds a sample of the revision's request counter (bounded)."""
    from inference_service.promotion.registry import PromotionError

    query = f'count(inference_requests_total{{revision="{revision}"}})'
    deadline = time.monotonic() + timeout_s
    while True:
        if prom.query(query):
            return
        if time.monotonic() >= deadline:
            raise PromotionError(
                f"Prometheus at {prom.url} has no metrics of revision {revision} after "
                f"{timeout_s:.0f} s: is the predictor scraped?"
            )
        time.sleep(poll_s)


def evaluate(spec: AnalysisSpec, prom: Prometheus, values: dict[str, str]) -> list[Check]:
    """Every metric check once; a query error counts as no data for that check."""
    checks = []
    for check in spec.metrics:
        query = check.render(values)
        try:
            value = prom.query(query)
            note = ""
        except PromQLError as exc:
            value, note = None, f" (query failed: {exc})"
        passed = check.judge(value)
        shown = "no data" if value is None else f"{value:.4g}"
        checks.append(
            Check(
                check.name,
                passed,
                f"{check.name} = {shown}, wanted {check.bounds()}{note}",
                {"value": value, "min": check.min, "max": check.max, "query": query},
            )
        )
    return checks


# --- the progressive loop ------------------------------------------------------------------


class SteppedTarget(Protocol):
    """What the loop needs from a target (see promotion.targets)."""

    scrape_interval_s: float

    def set_canary_weight(self, percent: int) -> None: ...


@dataclass
class Step:
    weight: int
    checks: list[Check]
    failed_checks: int  # cumulative, compared with the spec's threshold
    seconds: float
    load: dict | None = None

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def as_dict(self) -> dict:
        return {
            "weight": self.weight,
            "passed": self.passed,
            "failed_checks": self.failed_checks,
            "seconds": round(self.seconds, 2),
            "checks": [c.as_dict() for c in self.checks],
            "load": self.load,
        }


@dataclass
class Verdict:
    decision: str  # "promote" | "rollback"
    steps: list[Step] = field(default_factory=list)

    @property
    def failed(self) -> list[Check]:
        """The failed checks of the last step (what decided a rollback)."""
        return [c for c in self.steps[-1].checks if not c.passed] if self.steps else []


Load = Callable[[float], dict]


def run_steps(
    spec: AnalysisSpec,
    target: SteppedTarget,
    prom: Prometheus,
    revisions: tuple[str, str],
    *,
    load: Load | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_step: Callable[[Step], None] | None = None,
) -> Verdict:
    """Step the canary up and judge each step (see module doc). `revisions` is
    (champion, canary); the loop ends after at most len(weights) + threshold - 1 steps."""
    champion, canary = revisions
    scrape = target.scrape_interval_s
    settle = 2 * scrape + 0.5  # the last scrape of the window has landed
    verdict = Verdict("rollback")
    started = clock()
    weight, failed = spec.step_weight, 0
    while True:
        t0 = clock()
        target.set_canary_weight(weight)
        load_summary = load(spec.interval) if load else None
        remaining = spec.interval - (clock() - t0)
        if remaining > 0:
            sleep(remaining)
        sleep(settle)
        window = max(clock() - t0, 4 * scrape)
        values = {
            "revision": canary,
            "champion": champion,
            "interval": promql_duration(window),
            "elapsed": promql_duration(max(clock() - started, 4 * scrape)),
        }
        checks = evaluate(spec, prom, values)
        ok = all(c.passed for c in checks)
        failed += 0 if ok else 1
        step = Step(weight, checks, failed, clock() - t0, load_summary)
        verdict.steps.append(step)
        if on_step:
            on_step(step)
        if failed >= spec.threshold:
            verdict.decision = "rollback"
            return verdict
        if ok:
            if weight >= spec.max_weight:
                verdict.decision = "promote"
                return verdict
            weight = min(weight + spec.step_weight, spec.max_weight)


# --- the load step -------------------------------------------------------------------------


class ReplayLoad:
    """`rps` x duration requests of the held-out rows, shuffled, through the endpoint.

    Shuffled on every pass, so which rows each revision sees is random (the proxy splits
    by `balance random`), not a fixed subset of an ordered replay. Counts what came back
    — to report that no request was lost — but times nothing: the analysis reads Prometheus."""

    def __init__(
        self,
        url: str,
        bodies: Sequence[dict],
        *,
        rps: float,
        concurrency: int,
        headers: dict[str, str] | None = None,
        seed: int = 0,
        timeout: float = 30.0,
    ):
        if not bodies:
            raise ValueError("bodies: the held-out test set is empty")
        self.url = url
        self.bodies = list(bodies)
        self.rps = rps
        self.concurrency = concurrency
        self.headers = headers or {}
        self.rng = random.Random(seed)
        self.timeout = timeout
        self.total = Counter()

    def _order(self, n: int) -> list[dict]:
        out: list[dict] = []
        while len(out) < n:
            batch = list(self.bodies)
            self.rng.shuffle(batch)
            out += batch
        return out[:n]

    def __call__(self, duration: float) -> dict:
        n = max(1, round(self.rps * duration))
        result = loadgen.load(
            self.url,
            loadgen.json_bodies(self._order(n)),
            requests=n,
            concurrency=self.concurrency,
            rate=self.rps,
            warmup=0,
            header="x-revision",
            extra_headers=self.headers,
            timeout=self.timeout,
        )
        statuses = result.statuses
        revisions = {rev or "?": c for rev, c in result.header_values.items()}
        failed = sum(c for s, c in statuses.items() if s == 0 or s >= 500)
        self.total.update({"sent": n, "failed": failed})
        return {
            "sent": n,
            "failed": failed,
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "by_revision": revisions,
            "seconds": round(result.wall_s, 2),
        }
