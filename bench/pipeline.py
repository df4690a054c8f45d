"""Part 5 — the whole local path: `./task pipeline` from a stopped stack to first prediction.

It runs on private state (temp state dir, temp lake, free ports), so it starts from a
stopped stack by construction and never touches a developer's running services. Memory is
the peak of the summed RSS of every process the pipeline started — including the services
that detach from the process tree — found by a tag in their environment.

`ml:register` rewrites the committed `ml_platform/best_model_artifacts/.env.best_run`; the
bench puts the previous content back afterwards. `--smoke` measures `task local:up` only.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.context import BenchContext
from bench.procs import kill_tagged, new_tag, run_measured
from helper import object_store
from helper.object_store import free_s3_port
from helper.processes import free_port
from helper.settings import REPO_ROOT, load_settings

FULL = ["pipeline"]
SMOKE = ["local:up"]
TEARDOWN = (["serve:down"], ["local:down"])
# go-task's command echo (a single task) and the pipeline runner's line per finished stage
STEP_PREFIXES = ("task: [", "ok ", "FAILED ", "stopped ")


def pipeline_env(work: Path) -> dict[str, str]:
    """Settings for a private stack: every service on a free port, state and lake under
    `work` (the end-to-end restart test uses it too)."""
    s3, mlflow, serve, prometheus = free_s3_port(), free_port(), free_port(), free_port()
    s3_url, tracking = f"http://127.0.0.1:{s3}", f"http://127.0.0.1:{mlflow}"
    return {
        "MLP_STATE_DIR": str(work / "state"),
        "MLP_LAKE_URI": str(work / "lake"),
        "MLP_S3_PORT": str(s3),
        "MLP_MLFLOW_PORT": str(mlflow),
        "MLP_SERVE_PORT": str(serve),
        "MLP_PREDICTOR_PORTS": json.dumps([free_port(), free_port()]),
        "MLP_PROXY_STATS_PORT": str(free_port()),
        "MLP_PROMETHEUS_PORT": str(prometheus),
        "MLP_PROMETHEUS_URL": f"http://127.0.0.1:{prometheus}",
        # Explicit, so that variables of an outer stack (e.g. a test session) cannot leak in.
        "MLP_TRACKING_URI": tracking,
        "MLFLOW_TRACKING_URI": tracking,
        "MLP_S3_ENDPOINT_URL": s3_url,
        "MLFLOW_S3_ENDPOINT_URL": s3_url,
        "AWS_ENDPOINT_URL": s3_url,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "RAY_USAGE_STATS_ENABLED": "0",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }


def _measure_pipeline(ctx: BenchContext, tasks: list[str], work: Path):
    """Run the tasks and the teardown on a private stack, tagged; the committed
    `.env.best_run` (which `ml:register` rewrites) is restored whatever happens."""
    env = pipeline_env(work)
    best_run = ctx.settings.best_run_file
    saved = best_run.read_bytes() if best_run.is_file() else None
    tag = new_tag()
    try:
        run_ = run_measured(
            [str(REPO_ROOT / "task"), *tasks], log=work / "pipeline.log", env=env,
            cwd=REPO_ROOT, timeout=900, interval=0.5, tag=tag, mark_prefix=STEP_PREFIXES,
        )  # fmt: skip
        for i, down in enumerate(TEARDOWN):
            run_measured(
                [str(REPO_ROOT / "task"), *down], log=work / f"teardown-{i}.log", env=env,
                cwd=REPO_ROOT, timeout=120, tag=tag,
            )  # fmt: skip
    finally:
        leftovers = kill_tagged(tag)
        if saved is not None:
            best_run.write_bytes(saved)
        elif best_run.exists() and not ctx.smoke:
            best_run.unlink()
    return run_, leftovers


def run(ctx: BenchContext) -> dict:
    tasks = SMOKE if ctx.smoke else FULL
    work = ctx.work_dir / "pipeline"
    run_, leftovers = _measure_pipeline(ctx, tasks, work)
    ctx.log(
        f"  pipeline {' '.join(tasks)}: rc {run_.returncode}, {run_.wall_s:.1f} s, peak "
        f"{run_.peak_rss_bytes / 2**30:.2f} GiB over {run_.peak_processes} processes"
    )
    store_settings = load_settings(state_dir=work / "state")
    store_disk = object_store.disk_usage(store_settings) if not ctx.smoke else None
    store_rss = run_.peak_by_name.get("weed", 0)
    store_cpu = run_.cpu_by_name.get("weed", 0.0)
    ctx.log(
        f"  object store (SeaweedFS): peak RSS {store_rss / 2**20:.0f} MiB, CPU {store_cpu:.1f} s"
        f" ({100 * store_cpu / max(run_.wall_s, 1e-9):.1f} % of the wall time)"
        + (f", {store_disk / 2**20:.1f} MiB on disk after the pipeline" if store_disk else "")
    )
    steps = [{"at_s": t, "step": line.removeprefix("task: ")} for t, line in run_.marks]
    out = {
        "mode": "smoke" if ctx.smoke else "full",
        "command": f"./task {' '.join(tasks)}",
        "ok": run_.ok,
        "returncode": run_.returncode,
        "wall_s": round(run_.wall_s, 2),
        "peak_rss_mib": round(run_.peak_rss_bytes / 2**20, 1),
        "peak_processes": run_.peak_processes,
        # CPU seconds of every tagged process: on a shared machine a steadier figure than wall
        "cpu_s": round(run_.cpu_s, 1),
        "store_peak_rss_mib": round(store_rss / 2**20, 1),
        # Upper bound of what any store could save: its own CPU, as a share of the wall time
        "store_cpu_s": round(store_cpu, 2),
        "store_cpu_share_of_wall": round(store_cpu / max(run_.wall_s, 1e-9), 4),
        "cpu_s_by_program": {k: round(v, 1) for k, v in sorted(run_.cpu_by_name.items())},
        "store_disk_mib": round(store_disk / 2**20, 2) if store_disk is not None else None,
        "leftover_processes_killed": leftovers,
        "steps": steps,
    }
    if ctx.smoke:
        out["note"] = "smoke mode: `./task local:up` from a stopped stack, not the whole pipeline"
    if not run_.ok:
        out["tail"] = run_.tail
    rows = [["total", out["command"], f"{out['wall_s']:.1f}", f"{out['peak_rss_mib']:.0f}",
             out["peak_processes"], "ok" if out["ok"] else f"rc {out['returncode']}"]]  # fmt: skip
    disk = f"{out['store_disk_mib']} MiB on disk" if store_disk is not None else ""
    rows += [["object store", "weed (SeaweedFS)", "", f"{store_rss / 2**20:.0f}", "", disk]]
    rows += [["step", s["step"][:70], f"at {s['at_s']:.1f}", "", "", ""] for s in steps]
    out["table"] = {
        "columns": ["", "command", "wall s", "peak RSS MiB", "processes", "result"],
        "rows": rows,
    }
    return out
