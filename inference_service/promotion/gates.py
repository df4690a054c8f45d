"""Checks a candidate must pass before it gets any traffic. Pure: numbers in, verdict out.

Each gate returns a `Check` carrying the numbers that decided it, so the report can
say *why* ("accuracy 0.83 < min 0.90"), not just "failed".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Check:
    """One named verdict plus the figures behind it."""

    name: str
    passed: bool
    detail: str
    numbers: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def check_registry(model_name: str, version: str, found: bool) -> Check:
    """The version in `.env.best_run` must exist: a typo must not deploy an older model."""
    if found:
        return Check("registry", True, f"{model_name} version {version} is registered")
    return Check("registry", False, f"{model_name} version {version} is not in the registry")


def check_signature(
    candidate: Sequence[tuple[str, str]], champion: Sequence[tuple[str, str]] | None
) -> Check:
    """Same input names and types as the champion: clients send what the champion accepts."""
    if champion is None:
        return Check("signature", True, "no champion yet: nothing to be compatible with")
    cand, champ = dict(candidate), dict(champion)
    missing = sorted(set(champ) - set(cand))
    extra = sorted(set(cand) - set(champ))
    retyped = sorted(n for n in set(cand) & set(champ) if cand[n] != champ[n])
    problems = []
    if missing:
        problems.append(f"drops input(s) {missing}")
    if extra:
        problems.append(f"adds input(s) {extra}")
    if retyped:
        problems.append(
            "changes type of " + ", ".join(f"{n} ({champ[n]} -> {cand[n]})" for n in retyped)
        )
    numbers = {"candidate_inputs": list(cand), "champion_inputs": list(champ)}
    if problems:
        return Check(
            "signature", False, "incompatible with the champion: " + "; ".join(problems), numbers
        )
    return Check("signature", True, f"same {len(cand)} inputs and types as the champion", numbers)


def check_metric(
    metric: str,
    mode: str,
    candidate: float,
    champion: float | None,
    min_metric: float,
    margin: float,
) -> Check:
    """`min_metric` is the worst acceptable value (floor for 'max', ceiling for 'min');
    the candidate may trail the champion by at most `margin` on the same held-out rows."""
    if mode not in ("max", "min"):
        raise ValueError(f"mode: expected 'max' or 'min', got {mode!r}")
    numbers = {
        "metric": metric,
        "mode": mode,
        "candidate": candidate,
        "champion": champion,
        "min_metric": min_metric,
        "margin": margin,
    }
    sign = 1.0 if mode == "max" else -1.0
    if not math.isfinite(candidate) or sign * (candidate - min_metric) < 0:
        word = "below the minimum" if mode == "max" else "above the maximum"
        return Check(
            "metric", False, f"test {metric} {candidate:.4f} is {word} {min_metric}", numbers
        )
    if champion is None:
        return Check(
            "metric",
            True,
            f"test {metric} {candidate:.4f} meets {min_metric}; no champion to compare",
            numbers,
        )
    regression = sign * (champion - candidate)
    numbers["regression"] = regression
    if regression > margin:
        return Check(
            "metric",
            False,
            f"test {metric} {candidate:.4f} is worse than the champion's {champion:.4f} "
            f"by {regression:.4f} > margin {margin}",
            numbers,
        )
    return Check(
        "metric",
        True,
        f"test {metric} {candidate:.4f} vs champion {champion:.4f} (margin {margin})",
        numbers,
    )


def check_smoke(ok: bool, latency_ms: float | None, budget_ms: float, detail: str = "") -> Check:
    """The model loads in the serving runtime and answers a sample within the budget."""
    numbers = {"latency_ms": latency_ms, "budget_ms": budget_ms}
    if not ok or latency_ms is None:
        return Check("smoke", False, f"smoke load failed: {detail}", numbers)
    if latency_ms > budget_ms:
        return Check(
            "smoke",
            False,
            f"sample answered in {latency_ms:.1f} ms > budget {budget_ms} ms",
            numbers,
        )
    return Check("smoke", True, f"sample answered in {latency_ms:.1f} ms", numbers)
