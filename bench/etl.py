"""Part 3 — ETL: the Spark job vs the single-process pyarrow baseline on the same raw files.

Both run as fresh processes on the same generated file (1 % malformed lines of every
reject kind), one after the other: wall time includes start-up (JVM + Spark session, or
Python + pyarrow), which is what a user waits for; the in-job time each reports shows the
transform alone. Cost per row across sizes tells whether the job scales.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from bench.context import BenchContext
from bench.procs import run_measured

SIZES = (100_000, 1_000_000, 10_000_000, 100_000_000)
SMOKE_SIZES = (2_000,)  # one Spark start-up: the smoke run checks the harness, not scaling
MALFORMED = 0.01


def raw_file(ctx: BenchContext, rows: int) -> Path:
    """Generated raw file of `rows` lines, cached under the state dir (same rows every run);
    streamed by make_raw (bounded memory, ~1.2 s per 10^6 lines)."""
    from data_platform.make_raw import write_synthetic

    path = ctx.settings.state_dir / "bench-data" / f"raw-{rows}-m{MALFORMED}-s.data"
    if not path.is_file():
        ctx.log(f"  generating {rows:,} raw rows -> {path}")
        write_synthetic(path, rows, ctx.settings.dataset, malformed_fraction=MALFORMED)
    return path


def last_json(text: str) -> dict:
    """The last top-level JSON object printed (the job prints its summary last)."""
    start = text.rfind("\n{")
    start = 0 if start < 0 and text.startswith("{") else start
    if start < 0:
        raise ValueError("no JSON summary in the output")
    return json.loads(text[start:].strip())


def _figures(run, summary: dict, rows: int, job_key: str) -> dict:
    job_s = float(summary.get(job_key) or 0.0)
    return {
        "ok": run.ok and summary.get("rows_in") == rows,
        "wall_s": round(run.wall_s, 3),
        "job_s": job_s,
        "rows_per_s": round(rows / run.wall_s, 1),
        "us_per_row": round(run.wall_s / rows * 1e6, 4),
        "job_us_per_row": round(job_s / rows * 1e6, 4) if job_s else None,
        "peak_rss_mib": round(run.peak_rss_bytes / 2**20, 1),
        "cpu_s": round(run.cpu_s, 3),
        "cpu_us_per_row": round(run.cpu_s / rows * 1e6, 4),
        "rows_in": summary.get("rows_in"),
        "rows_out": summary.get("rows_out"),
        # the job's summary carries the manifest (`rejects.by_reason`); the baseline a flat dict
        "rejects_by_reason": summary.get("rejects_by_reason")
        or summary.get("rejects", {}).get("by_reason"),
        "split": [summary.get("train_rows"), summary.get("test_rows")],
        "returncode": run.returncode,
    }


def baseline_memory_problem(raw: Path, rss_per_byte: float | None) -> str | None:
    """Why the in-memory baseline must not run on `raw`, or None. It holds the whole file
    as Arrow strings plus its columns (3.1 GiB peak at 10^7 lines, 343 MB): at 10^8 that is
    ~30 GiB, and on a shared machine the kernel's OOM killer may pick someone else's process.
    The estimate scales the peak RSS per raw byte measured at a smaller size in this run."""
    need = raw.stat().st_size * (rss_per_byte or 10.0)
    with open("/proc/meminfo") as fh:
        info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in fh}
    have = info.get("MemAvailable", 0)
    if need <= 0.8 * have:
        return None
    return (
        f"not run: needs ~{need / 2**30:.0f} GiB (peak RSS per raw byte measured at a smaller "
        f"size x {raw.stat().st_size / 2**30:.1f} GiB), {have / 2**30:.0f} GiB available"
    )


def measure_size(ctx: BenchContext, rows: int, rss_per_byte: float | None = None) -> dict:
    raw = raw_file(ctx, rows)
    work = ctx.work_dir / f"etl-{rows}"
    env = {"SPARK_LOCAL_IP": "127.0.0.1", "MLP_STATE_DIR": str(work / "state")}
    spark = run_measured(
        [sys.executable, "-m", "data_platform.etl_job", "--raw-uri", str(raw),
         "--lake-uri", str(work / "lake")],
        log=work / "spark.log", env=env, cwd=ctx.settings.state_dir.parent, timeout=3600,
    )  # fmt: skip
    out = {"rows": rows, "raw_file": str(raw), "raw_bytes": raw.stat().st_size}
    out["spark"] = _engine_figures(spark, rows)
    ctx.log(f"  etl {rows:>11,} spark    {json.dumps(_short(out['spark']))}")
    skip = baseline_memory_problem(raw, rss_per_byte)
    if skip:
        out["pyarrow"] = {"ok": False, "error": skip, "skipped": True}
    else:
        base = run_measured(
            [sys.executable, "-m", "bench.etl_baseline", "--raw", str(raw), "--out",
             str(work / "baseline")],
            log=work / "baseline.log", env=env, timeout=3600,
        )  # fmt: skip
        out["pyarrow"] = _engine_figures(base, rows)
    ctx.log(f"  etl {rows:>11,} pyarrow  {json.dumps(_short(out['pyarrow']))}")
    out.update(_ratios(out["spark"], out["pyarrow"]))
    shutil.rmtree(work / "lake", ignore_errors=True)
    shutil.rmtree(work / "baseline", ignore_errors=True)
    return out


def _engine_figures(run, rows: int) -> dict:
    try:
        return _figures(run, last_json(run.log.read_text(errors="replace")), rows, "duration_s")
    except ValueError as exc:
        return {"ok": False, "error": str(exc), "tail": run.tail[-5:]}


def _ratios(spark: dict, base: dict) -> dict:
    """Spark over pyarrow (wall, in-job) and whether both saw the same rejects and split."""
    if not (spark.get("ok") and base.get("ok")):
        return {"same_rejects": None}
    same = spark.get("rejects_by_reason") == base.get("rejects_by_reason")
    return {
        "same_rejects": same and spark.get("rows_out") == base.get("rows_out"),
        "same_split_sizes": spark.get("split") == base.get("split"),
        "wall_ratio": round(spark["wall_s"] / base["wall_s"], 2),
        "job_ratio": round(spark["job_s"] / base["job_s"], 2),
    }


def _short(fig: dict) -> dict:
    keys = ("ok", "wall_s", "job_s", "rows_per_s", "peak_rss_mib", "error")
    return {k: fig[k] for k in keys if k in fig}


def run(ctx: BenchContext) -> dict:
    sizes = list(ctx.etl_sizes or (SMOKE_SIZES if ctx.smoke else SIZES))
    results, rss_per_byte = [], None
    for n in sorted(sizes):
        results.append(measure_size(ctx, n, rss_per_byte))
        base = results[-1]["pyarrow"]
        if base.get("ok"):
            rss_per_byte = base["peak_rss_mib"] * 2**20 / results[-1]["raw_bytes"]
    spark_vs = [r["wall_ratio"] for r in results if "wall_ratio" in r]
    return {
        "malformed_fraction": MALFORMED,
        "sizes": results,
        "spark_wall_over_pyarrow": spark_vs,
        "note": "Spark: `python -m data_platform.etl_job` (local[2]); pyarrow: "
        "`python -m bench.etl_baseline` (same reject rules; split by the same per-class "
        "rank rule with a different hash). Both as fresh processes; wall includes start-up. "
        "CPU us/row: user+system seconds of every process of the run (the JVM included) "
        "per raw row; a shared machine inflates it much less than wall time.",
        "spark_job_over_pyarrow": [r["job_ratio"] for r in results if "job_ratio" in r],
        "table": _table(results),
    }


def _table(results: list[dict]) -> dict:
    columns = ["rows", "engine", "wall s", "in-job s", "rows/s (wall)", "us/row (wall)",
               "us/row (in-job)", "CPU us/row", "peak RSS MiB", "Spark/pyarrow wall / in-job",
               "same rejects / split sizes"]  # fmt: skip
    rows = []
    for r in results:
        for engine in ("spark", "pyarrow"):
            f = r[engine]
            if not f.get("ok"):
                rows.append([f"{r['rows']:,}", engine, "skipped" if f.get("skipped") else
                             "failed", f.get("error", ""), *[""] * 7])  # fmt: skip
                continue
            ratio = f"{r['wall_ratio']:.2f} / {r['job_ratio']:.2f}" if "wall_ratio" in r else "-"
            same = "-" if r["same_rejects"] is None else (
                f"{'yes' if r['same_rejects'] else 'NO'} / "
                f"{'yes' if r.get('same_split_sizes') else 'NO'}")  # fmt: skip
            rows.append(
                [f"{r['rows']:,}", engine, f"{f['wall_s']:.1f}", f"{f['job_s']:.1f}",
                 f"{f['rows_per_s']:,.0f}", f"{f['us_per_row']:.2f}",
                 f"{f['job_us_per_row']:.2f}" if f["job_us_per_row"] else "-",
                 f"{f.get('cpu_us_per_row', 0):.2f}", f"{f['peak_rss_mib']:.0f}",
                 ratio if engine == "spark" else "", same if engine == "spark" else ""]
            )  # fmt: skip
    return {"columns": columns, "rows": rows}
