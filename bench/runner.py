"""Run the selected parts one after another and write the run's JSON, Markdown and plots.

A part that fails is recorded with its error and the run goes on: one broken area must
not hide the figures of the others.
"""

from __future__ import annotations

import importlib
import json
import shutil
import tempfile
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench import goals, plots, report
from bench.context import BenchContext
from bench.machine import git_commit, machine_info, package_versions

PARTS = ("serving", "limit", "etl", "tuning", "pipeline")
# Run order: the pipeline restarts the stack and the serving part needs the machine quiet,
# so the in-process parts go between them.
ORDER = ("limit", "serving", "tuning", "etl", "pipeline")


def select(parts: Sequence[str]) -> list[str]:
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ValueError(f"parts: unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    chosen = set(parts) or set(PARTS)
    return [p for p in ORDER if p in chosen]


def run_part(name: str, ctx: BenchContext) -> dict:
    module = importlib.import_module(f"bench.{name}")
    started = time.perf_counter()
    ctx.log(f"== {name} ==")
    try:
        result = module.run(ctx)
    except Exception as exc:  # noqa: BLE001 - recorded in the results, the run goes on
        ctx.log(f"{name} failed: {exc}")
        result = {
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc().splitlines()[-12:],
        }
    result["part_seconds"] = round(time.perf_counter() - started, 1)
    return result


def run(
    parts: Sequence[str],
    *,
    settings,
    smoke: bool,
    out_dir: Path,
    keep_work: bool = False,
    **ctx_options,
) -> dict:
    """Run `parts` (all when empty) and write `<out_dir>/bench-<run_id>.json`, `latest.json`,
    `latest.md` and the plots; returns the run document."""
    chosen = select(parts)
    out_dir.mkdir(parents=True, exist_ok=True)
    started_at = datetime.now(UTC)
    run_id = started_at.strftime("%Y%m%dT%H%M%SZ") + ("-smoke" if smoke else "")
    work_dir = Path(tempfile.mkdtemp(prefix=f"bench-{run_id}-"))
    ctx = BenchContext(settings, smoke, out_dir, work_dir, **ctx_options)
    doc: dict = {
        "run_id": run_id,
        "started_at": started_at.isoformat(timespec="seconds"),
        "smoke": smoke,
        "machine": machine_info(),
        "versions": package_versions(),
        "git_commit": git_commit(),
        "parts": {},
    }
    try:
        for name in chosen:
            doc["parts"][name] = run_part(name, ctx)
    finally:
        if not keep_work:
            shutil.rmtree(work_dir, ignore_errors=True)
    doc["duration_s"] = round(time.perf_counter() - ctx.started, 1)
    doc["goals"] = goals.evaluate(doc["parts"])
    doc["derived"] = {"serving_fraction_of_limit": goals.serving_vs_limit(doc["parts"])}
    doc["plots"] = plots.make_all(doc, out_dir)
    write(doc, out_dir)
    return doc


def write(doc: dict, out_dir: Path) -> None:
    text = json.dumps(doc, indent=2, default=str)
    (out_dir / f"bench-{doc['run_id']}.json").write_text(text)
    (out_dir / "latest.json").write_text(text)
    md = report.render(doc)
    (out_dir / "latest.md").write_text(md)
    print(md)
