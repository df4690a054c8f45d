"""Part 1 — serving: the same model and requests through each configuration, one after another.

Configurations: (a) our predictor's native path, (b) MLflow pyfunc inside the same server,
(c) MLServer 1.7.1 + mlserver-mlflow in its own environment, (d) the local canary (HAProxy
splitting two predictor slots) at 10 %, with its Prometheus scraping. Cases: single-row v2
requests at concurrency 1 and 8, batches of 100 and 10,000 rows at concurrency 1. Figures:
throughput, p50/p99 latency, peak server RSS while loaded.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from bench import loadgen, servers
from bench.bench_model import BENCH_MODEL_NAME, model_features, request_rows, v2_body
from bench.context import BenchContext
from bench.procs import RssSampler

CANARY_PERCENT = 10


@dataclass(frozen=True)
class Case:
    name: str
    rows: int
    connections: int


CASES = (
    Case("single_c1", 1, 1),
    Case("single_c8", 1, 8),
    Case("batch_100", 100, 1),
    Case("batch_10000", 10_000, 1),
)
CONFIGS = ("native", "pyfunc", "mlserver", "canary")


def durations(smoke: bool) -> tuple[float, float]:
    """(warm-up, measured) seconds per case."""
    return (0.0, 1.0) if smoke else (2.0, 10.0)


def write_bodies(ctx: BenchContext, features: list[str]) -> dict[str, Path]:
    """One body file per case; every configuration gets byte-identical requests."""
    bodies = {}
    for case in CASES:
        path = ctx.work_dir / "bodies" / f"{case.name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(v2_body(features, request_rows(features, case.rows, seed=1)))
        bodies[case.name] = path
    return bodies


JSON = {"Content-Type": "application/json"}


def post(url: str, body: bytes, timeout: float = 30.0) -> tuple[int, dict[str, str], bytes]:
    resp = httpx.post(url, content=body, headers=JSON, timeout=timeout)
    return resp.status_code, {k.lower(): v for k, v in resp.headers.items()}, resp.content


def version_split(url: str, body: bytes, n: int) -> dict[str, int]:
    """Which `x-model-version` answered, over n sequential requests (checked outside the
    timed load so header bookkeeping does not slow the load generator)."""
    counts: collections.Counter[str] = collections.Counter()
    with httpx.Client(headers=JSON, timeout=30.0) as client:
        for _ in range(n):
            counts[client.post(url, content=body).headers.get("x-model-version", "?")] += 1
    return dict(counts)


def measure_config(
    ctx: BenchContext, name: str, running: servers.Running, path: str, bodies: dict[str, Path]
) -> dict:
    """Every case against one running configuration: load, latency percentiles, peak RSS."""
    url = running.url + path
    status, _, _ = post(url, bodies["single_c1"].read_bytes())
    if status != 200:
        raise RuntimeError(f"{name}: the check request answered {status}")
    warm, measured = durations(ctx.smoke)
    idle_rss = sum(_rss(p) for p in running.psutil_procs())
    cases = {}
    for case in CASES:
        if warm:
            loadgen.run_load(
                url, bodies[case.name], connections=case.connections, duration_s=warm,
                work_dir=ctx.work_dir,
            )  # fmt: skip
        _, _, reply = post(url, bodies[case.name].read_bytes())  # what the client receives
        with RssSampler(running.psutil_procs, interval=0.2) as sampler:
            res = loadgen.run_load(
                url, bodies[case.name], connections=case.connections, duration_s=measured,
                work_dir=ctx.work_dir,
            )  # fmt: skip
        row = res.as_dict()
        row |= {
            "rows": case.rows,
            "rows_per_s": round(res.rps * case.rows, 1),
            "peak_rss_mib": round(sampler.peak / 2**20, 1),
            "response_bytes": len(reply),
        }
        cases[case.name] = row
        ctx.log(
            f"  {name:<9} {case.name:<12} {res.rps:9.1f} req/s  p50 {res.pct(50):8.2f} ms  "
            f"p99 {res.pct(99):8.2f} ms  errors {res.errors}  rss {row['peak_rss_mib']} MiB"
        )
    return {"status": "ok", "idle_rss_mib": round(idle_rss / 2**20, 1), "cases": cases}


def _rss(proc: psutil.Process) -> int:
    try:
        return proc.memory_info().rss
    except psutil.Error:
        return 0


def run(ctx: BenchContext) -> dict:
    model_dir = ctx.model_dir()
    features = model_features(model_dir)
    bodies = write_bodies(ctx, features)
    name = BENCH_MODEL_NAME
    out: dict = {
        "generator": loadgen.generator_name(),
        "model_dir": str(model_dir),
        "durations_s": dict(zip(("warmup", "measured"), durations(ctx.smoke), strict=True)),
        "cases": [c.__dict__ for c in CASES],
        "configs": {},
    }
    ctx.log(f"serving: load generator {out['generator']}")
    configs = out["configs"]
    wanted = [c for c in CONFIGS if c in ctx.serving_configs]

    if {"native", "pyfunc"} & set(wanted):
        running = servers.start_predictor(model_dir, name, ctx.work_dir / "predictor")
        try:
            for cfg, model in (("native", name), ("pyfunc", f"{name}-pyfunc")):
                if cfg in wanted:
                    configs[cfg] = measure_config(
                        ctx, cfg, running, f"/v2/models/{model}/infer", bodies
                    )
                    configs[cfg]["rss_note"] = "one process serving both native and pyfunc"
        finally:
            running.stop()

    if "mlserver" in wanted:
        configs["mlserver"] = _isolated(ctx, "mlserver", _mlserver, ctx, model_dir, name, bodies)

    if "canary" in wanted:
        configs["canary"] = _isolated(ctx, "canary", _canary, ctx, model_dir, name, bodies)

    out["table"] = table(configs)
    return out


def _isolated(ctx: BenchContext, cfg: str, fn, *args) -> dict:
    """One configuration failing (say MLServer's environment cannot be built) is recorded
    and the others are still measured."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - recorded in the results
        ctx.log(f"  {cfg} failed: {exc}")
        return {"status": f"failed: {type(exc).__name__}: {exc}", "cases": {}}


def _canary(ctx: BenchContext, model_dir: Path, name: str, bodies: dict[str, Path]) -> dict:
    running = servers.start_canary(model_dir, name, ctx.work_dir / "canary", CANARY_PERCENT)
    try:
        url = f"{running.url}/v2/models/{name}/infer"
        result = measure_config(ctx, "canary", running, f"/v2/models/{name}/infer", bodies)
        n = 100 if ctx.smoke else 1000
        result["version_split"] = version_split(url, bodies["single_c1"].read_bytes(), n)
        result["canary_percent"] = CANARY_PERCENT
        result["rss_note"] = "HAProxy + champion + canary predictors + Prometheus"
        return result
    finally:
        running.stop()


def _mlserver(ctx: BenchContext, model_dir: Path, name: str, bodies: dict[str, Path]) -> dict:
    if ctx.smoke:
        return {"status": "not measured in smoke mode", "cases": {}}
    env_dir = servers.ensure_mlserver_env(ctx.settings, ctx.log)
    running = servers.start_mlserver(env_dir, model_dir, name, ctx.work_dir / "mlserver")
    try:
        result = measure_config(ctx, "mlserver", running, f"/v2/models/{name}/infer", bodies)
        result["pins"] = list(servers.MLSERVER_PINS)
        result["rss_note"] = "MLServer main process + its inference worker"
        return result
    finally:
        running.stop()


def table(configs: dict) -> dict:
    columns = ["config", "case", "req/s", "rows/s", "p50 ms", "p99 ms", "errors", "RSS MiB"]
    rows = []
    for cfg, res in configs.items():
        if not res.get("cases"):
            rows.append([cfg, "-", res.get("status", "-"), "", "", "", "", ""])
            continue
        for case, r in res["cases"].items():
            rows.append(
                [cfg, case, f"{r['rps']:.1f}", f"{r['rows_per_s']:.0f}", f"{r['p50_ms']:.2f}",
                 f"{r['p99_ms']:.2f}", str(r["errors"]), f"{r['peak_rss_mib']:.0f}"]
            )  # fmt: skip
    return {"columns": columns, "rows": rows}
