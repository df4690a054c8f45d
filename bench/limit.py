"""Part 2 — the limit: the same rows through `xgboost.Booster.inplace_predict` in-process.

This is the ceiling HTTP and JSON take serving away from. The booster is loaded from the
same MLflow model and configured as the predictor configures it (nthread=1), and the
inputs are the float32 matrices the predictor builds from a request.
"""

from __future__ import annotations

import time

import numpy as np

from bench.bench_model import model_features, request_rows
from bench.context import BenchContext

BATCHES = (1, 100, 10_000)


def load_booster(model_dir):
    import mlflow.xgboost

    model = mlflow.xgboost.load_model(str(model_dir))
    booster = model.get_booster() if hasattr(model, "get_booster") else model
    booster.set_param({"nthread": 1})
    return booster


def time_calls(booster, x: np.ndarray, seconds: float) -> np.ndarray:
    """Per-call latencies (s) of back-to-back predictions for about `seconds`."""
    for _ in range(3):  # warm caches and xgboost's lazy set-up
        booster.inplace_predict(x, validate_features=False)
    out = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(out) < 5:
        t0 = time.perf_counter()
        booster.inplace_predict(x, validate_features=False)
        out.append(time.perf_counter() - t0)
    return np.asarray(out)


def run(ctx: BenchContext) -> dict:
    model_dir = ctx.model_dir()
    features = model_features(model_dir)
    booster = load_booster(model_dir)
    seconds = 0.3 if ctx.smoke else 3.0
    batches = {}
    for n in BATCHES:
        x = request_rows(features, n, seed=1).astype(np.float32)
        lat = time_calls(booster, x, seconds)
        per_call = float(lat.mean())
        batches[str(n)] = {
            "rows": n,
            "calls": int(lat.size),
            "calls_per_s": round(1.0 / per_call, 1),
            "rows_per_s": round(n / per_call, 1),
            "p50_ms": round(float(np.percentile(lat, 50)) * 1000, 4),
            "p99_ms": round(float(np.percentile(lat, 99)) * 1000, 4),
        }
        ctx.log(
            f"  limit batch {n:>6}: {n / per_call:12.0f} rows/s  mean {lat.mean() * 1e3:.3f} ms"
        )
    columns = ["rows per call", "calls/s", "rows/s", "p50 ms", "p99 ms"]
    rows = [
        [str(b["rows"]), f"{b['calls_per_s']:.0f}", f"{b['rows_per_s']:.0f}",
         f"{b['p50_ms']:.3f}", f"{b['p99_ms']:.3f}"]
        for b in batches.values()
    ]  # fmt: skip
    return {"nthread": 1, "batches": batches, "table": {"columns": columns, "rows": rows}}
