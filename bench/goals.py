"""The issue's goals, checked against one run's figures: met, not met, or not measured.

Each check returns the numbers it compared, so the report says *why* a goal is met or not.
"""

from __future__ import annotations

from collections.abc import Callable

Goal = dict  # {"goal", "target", "measured", "met": True | False | None}


def _case(parts: dict, config: str, case: str) -> dict | None:
    return parts.get("serving", {}).get("configs", {}).get(config, {}).get("cases", {}).get(case)


def _missing(goal: str, target: str, why: str) -> Goal:
    return {"goal": goal, "target": target, "measured": why, "met": None}


def serving_vs_mlserver(parts: dict) -> Goal:
    goal, target = "serving single-row c=1 vs MLServer", ">= 5x throughput and lower p99"
    ours, theirs = _case(parts, "native", "single_c1"), _case(parts, "mlserver", "single_c1")
    if not ours or not theirs:
        status = parts.get("serving", {}).get("configs", {}).get("mlserver", {}).get("status")
        return _missing(goal, target, status or "not measured")
    ratio = ours["rps"] / theirs["rps"] if theirs["rps"] else float("inf")
    return {
        "goal": goal,
        "target": target,
        "measured": f"{ratio:.2f}x ({ours['rps']:.0f} vs {theirs['rps']:.0f} req/s), "
        f"p99 {ours['p99_ms']:.2f} vs {theirs['p99_ms']:.2f} ms",
        "met": ratio >= 5.0 and ours["p99_ms"] < theirs["p99_ms"],
        "ratio": ratio,
    }


def canary_cost(parts: dict) -> Goal:
    """Throughput lost by going through the canary proxy instead of calling the predictor,
    single rows at 1 and at 8 connections; met only when every measured case is within."""
    goal, target = "canary routing cost (10 %, single-row c=1 and c=8)", "<= 10 % of throughput"
    costs, texts = {}, []
    for case in ("single_c1", "single_c8"):
        direct, routed = _case(parts, "native", case), _case(parts, "canary", case)
        if not direct or not routed or not direct["rps"]:
            continue
        costs[case] = 1.0 - routed["rps"] / direct["rps"]
        texts.append(
            f"{case.removeprefix('single_')}: {costs[case]:.1%} ({routed['rps']:.0f} vs "
            f"{direct['rps']:.0f} req/s direct; p50 +{routed['p50_ms'] - direct['p50_ms']:.2f} ms)"
        )
    if "single_c1" not in costs:
        return _missing(goal, target, "not measured")
    return {
        "goal": goal,
        "target": target,
        "measured": "; ".join(texts),
        "met": all(cost <= 0.10 for cost in costs.values()),
        "cost": costs["single_c1"],
        "costs": costs,
    }


def batch_latency(parts: dict) -> Goal:
    goal, target = "10,000-row batch end to end (native)", "<= 50 ms"
    case = _case(parts, "native", "batch_10000")
    if not case:
        return _missing(goal, target, "not measured")
    return {
        "goal": goal,
        "target": target,
        "measured": f"p50 {case['p50_ms']:.1f} ms, p99 {case['p99_ms']:.1f} ms",
        "met": case["p50_ms"] <= 50.0,
    }


def etl_scaling(parts: dict) -> Goal:
    goal, target = "ETL (Spark) cost per row, two largest sizes", "flat (<= +10 %) or falling"
    sizes = [s for s in parts.get("etl", {}).get("sizes", []) if s.get("spark", {}).get("ok")]
    if len(sizes) < 2:
        return _missing(goal, target, "fewer than two sizes measured")
    small, large = sorted(sizes, key=lambda s: s["rows"])[-2:]
    # In-job time: the JVM and session start-up would make any job look like it scales.
    a, b = small["spark"]["job_us_per_row"], large["spark"]["job_us_per_row"]
    if not a or not b:
        return _missing(goal, target, "the job reported no duration")
    change = b / a - 1.0
    cpu_a, cpu_b = small["spark"].get("cpu_us_per_row"), large["spark"].get("cpu_us_per_row")
    cpu = f"; CPU {cpu_a:.2f} -> {cpu_b:.2f} us/row ({cpu_b / cpu_a - 1:+.0%})" if cpu_a else ""
    return {
        "goal": goal,
        "target": target,
        "measured": f"{a:.2f} -> {b:.2f} us/row in-job ({change:+.0%}) from {small['rows']:,} "
        f"to {large['rows']:,} rows{cpu}",
        "met": change <= 0.10,
        "change": change,
    }


def etl_vs_pyarrow(parts: dict) -> Goal:
    """At 10^7 rows (else the largest size both engines ran): Spark over the single-process
    pyarrow baseline, in-job <= 2x and wall (JVM start included) <= 2.5x."""
    goal, target = "ETL Spark vs pyarrow at 10^7 rows", "in-job <= 2x, wall <= 2.5x"
    both = [s for s in parts.get("etl", {}).get("sizes", []) if "job_ratio" in s]
    if not both:
        return _missing(goal, target, "no size measured by both engines")
    at = next((s for s in both if s["rows"] == 10_000_000), max(both, key=lambda s: s["rows"]))
    return {
        "goal": goal,
        "target": target,
        "measured": f"{at['rows']:,} rows: in-job {at['job_ratio']:.2f}x ("
        f"{at['spark']['job_s']:.1f} vs {at['pyarrow']['job_s']:.1f} s), wall "
        f"{at['wall_ratio']:.2f}x ({at['spark']['wall_s']:.1f} vs {at['pyarrow']['wall_s']:.1f} s)",
        "met": at["job_ratio"] <= 2.0 and at["wall_ratio"] <= 2.5,
    }


def tuning_speed(parts: dict) -> Goal:
    goal = "tuning reaches the original config's best accuracy"
    target = "in <= 1/3 of the original's wall time"
    tuning = parts.get("tuning", {})
    orig, ours = tuning.get("searches", {}).get("original"), tuning.get("searches", {}).get("ours")
    if not orig or not ours:
        return _missing(goal, target, "not measured")
    reach = ours.get("time_to_reach_original_best_s")
    if reach is None:
        return {
            "goal": goal,
            "target": target,
            "measured": f"never reached {orig['best_accuracy']:.4f} (best "
            f"{ours['best_accuracy']:.4f}); original took {orig['wall_s']:.1f} s",
            "met": False,
        }
    share = reach / orig["wall_s"]
    return {
        "goal": goal,
        "target": target,
        "measured": f"{reach:.1f} s = {share:.0%} of {orig['wall_s']:.1f} s "
        f"(accuracy {orig['best_accuracy']:.4f})",
        "met": share <= 1 / 3,
        "share": share,
    }


def first_trial(parts: dict) -> Goal:
    """Tune's first trial start in fresh processes of one run: `ml:tune`'s order (Ray before
    the session's imports) with ml_platform.ray_session's fast start vs a plain Ray Tune
    script. Judged from `Tuner.fit` (the issue's figure); from the process's start shown too."""
    goal, target = "time to the first trial's start (fast start vs Ray defaults)", "<= 1/2"
    ab = parts.get("tuning", {}).get("first_trial")
    if not ab or not ab.get("ratio"):
        return _missing(goal, target, "not measured")
    fast, base = ab["fast_start"], ab["ray_defaults"]
    launch = ab.get("ratio_from_launch")
    return {
        "goal": goal,
        "target": target,
        "measured": f"{fast['first_trial_start_s']:.1f} vs {base['first_trial_start_s']:.1f} s "
        f"after Tuner.fit ({ab['ratio']:.1f}x faster); "
        f"{_s(fast.get('first_trial_from_launch_s'))} vs "
        f"{_s(base.get('first_trial_from_launch_s'))} after the process started "
        f"({'-' if launch is None else f'{launch:.1f}x'})",
        "met": ab["ratio"] >= 2.0,
        "ratio": ab["ratio"],
    }


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def pipeline_cold(parts: dict) -> Goal:
    goal, target = "pipeline from a stopped stack to first prediction", "<= 90 s"
    pipe = parts.get("pipeline", {})
    if not pipe.get("ok") or pipe.get("mode") != "full":
        why = pipe.get("note") or ("failed" if pipe else "not measured")
        return _missing(goal, target, why)
    return {
        "goal": goal,
        "target": target,
        "measured": f"{pipe['wall_s']:.0f} s, peak RSS {pipe['peak_rss_mib'] / 1024:.2f} GiB",
        "met": pipe["wall_s"] <= 90.0,
    }


CHECKS: tuple[Callable[[dict], Goal], ...] = (
    serving_vs_mlserver,
    canary_cost,
    batch_latency,
    etl_scaling,
    etl_vs_pyarrow,
    tuning_speed,
    first_trial,
    pipeline_cold,
)


def evaluate(parts: dict) -> list[Goal]:
    return [check(parts) for check in CHECKS]


def serving_vs_limit(parts: dict) -> dict:
    """Serving (native, c=1) rows/s as a fraction of in-process inplace_predict rows/s."""
    limit = parts.get("limit", {}).get("batches", {})
    out = {}
    for case, rows in (("single_c1", "1"), ("batch_100", "100"), ("batch_10000", "10000")):
        served = _case(parts, "native", case)
        if served and rows in limit and limit[rows]["rows_per_s"]:
            out[case] = round(served["rows_per_s"] / limit[rows]["rows_per_s"], 4)
    return out
