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

SIZES = (100_000, 1_000_000, 10_000_000)
SMOKE_SIZES = (2_000,)  # one Spark start-up: the smoke run checks the harness, not scaling
MALFORMED = 0.01
CHUNK = 100_000


def raw_file(ctx: BenchContext, rows: int) -> Path:
    """Generated raw file of `rows` lines, cached under the state dir (same rows every run)."""
    from data_platform.make_raw import synthetic_lines

    path = ctx.settings.state_dir / "bench-data" / f"raw-{rows}-m{MALFORMED}.data"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    spec = ctx.settings.dataset
    ctx.log(f"  generating {rows:,} raw rows -> {path}")
    with open(tmp, "w", encoding="utf-8") as fh:
        for i, start in enumerate(range(0, rows, CHUNK)):
            n = min(CHUNK, rows - start)
            lines = synthetic_lines(n, spec, seed=i, malformed_fraction=MALFORMED)
            fh.write("".join(line.text + "\n" for line in lines))
    tmp.rename(path)
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
        "returncode": run.returncode,
    }


def measure_size(ctx: BenchContext, rows: int) -> dict:
    raw = raw_file(ctx, rows)
    work = ctx.work_dir / f"etl-{rows}"
    env = {"SPARK_LOCAL_IP": "127.0.0.1", "MLP_STATE_DIR": str(work / "state")}
    spark = run_measured(
        [sys.executable, "-m", "data_platform.etl_job", "--raw-uri", str(raw),
         "--lake-uri", str(work / "lake")],
        log=work / "spark.log", env=env, cwd=ctx.settings.state_dir.parent, timeout=3600,
    )  # fmt: skip
    base = run_measured(
        [sys.executable, "-m", "bench.etl_baseline", "--raw", str(raw), "--out",
         str(work / "baseline")],
        log=work / "baseline.log", env=env, timeout=3600,
    )  # fmt: skip
    out = {"rows": rows, "raw_file": str(raw)}
    for name, run, key in (("spark", spark, "duration_s"), ("pyarrow", base, "duration_s")):
        try:
            out[name] = _figures(run, last_json(run.log.read_text(errors="replace")), rows, key)
        except ValueError as exc:
            out[name] = {"ok": False, "error": str(exc), "tail": run.tail[-5:]}
        ctx.log(f"  etl {rows:>10,} {name:<8} {json.dumps(_short(out[name]))}")
    same = out["spark"].get("rejects_by_reason") == out["pyarrow"].get("rejects_by_reason")
    out["same_rejects"] = same and out["spark"].get("rows_out") == out["pyarrow"].get("rows_out")
    shutil.rmtree(work / "lake", ignore_errors=True)
    shutil.rmtree(work / "baseline", ignore_errors=True)
    return out


def _short(fig: dict) -> dict:
    keys = ("ok", "wall_s", "job_s", "rows_per_s", "peak_rss_mib", "error")
    return {k: fig[k] for k in keys if k in fig}


def run(ctx: BenchContext) -> dict:
    sizes = list(ctx.etl_sizes or (SMOKE_SIZES if ctx.smoke else SIZES))
    results = [measure_size(ctx, n) for n in sorted(sizes)]
    columns = ["rows", "engine", "wall s", "in-job s", "rows/s (wall)", "us/row (wall)",
               "us/row (in-job)", "CPU us/row", "peak RSS MiB", "same rejects"]  # fmt: skip
    rows = []
    for r in results:
        for engine in ("spark", "pyarrow"):
            f = r[engine]
            if not f.get("ok"):
                rows.append([f"{r['rows']:,}", engine, "failed", f.get("error", ""), "", "", "",
                             "", "", ""])  # fmt: skip
                continue
            rows.append(
                [f"{r['rows']:,}", engine, f"{f['wall_s']:.1f}", f"{f['job_s']:.1f}",
                 f"{f['rows_per_s']:,.0f}", f"{f['us_per_row']:.2f}",
                 f"{f['job_us_per_row']:.2f}" if f["job_us_per_row"] else "-",
                 f"{f.get('cpu_us_per_row', 0):.2f}", f"{f['peak_rss_mib']:.0f}",
                 "yes" if r["same_rejects"] else "NO"]
            )  # fmt: skip
    spark_vs = [
        round(r["spark"]["wall_s"] / r["pyarrow"]["wall_s"], 2)
        for r in results
        if r["spark"].get("ok") and r["pyarrow"].get("ok")
    ]
    return {
        "malformed_fraction": MALFORMED,
        "sizes": results,
        "spark_wall_over_pyarrow": spark_vs,
        "note": "Spark: `python -m data_platform.etl_job` (local[2]); pyarrow: "
        "`python -m bench.etl_baseline` (same reject rules; split by the same per-class "
        "rank rule with a different hash). Both as fresh processes; wall includes start-up. "
        "CPU us/row: user+system seconds of every process of the run (the JVM included) "
        "per raw row; a shared machine inflates it much less than wall time.",
        "table": {"columns": columns, "rows": rows},
    }
