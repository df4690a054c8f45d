"""The one figure each pipeline stage is judged by, read from what the stage left behind.

Figures come from state (the lake's manifest, the tuning progress file, `.env.best_run`, the
promotion report, the serving state) rather than from console output, so library chatter can
change without breaking the pipeline's report. A figure never fails the run: a missing piece
reads as an empty string.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from helper.settings import Settings


def _last_line(log: Path, pattern: str) -> str:
    """The last log line matching `pattern` (for stages whose result is only printed)."""
    found = ""
    rx = re.compile(pattern)
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        if rx.search(line):
            found = line.strip()
    return found


def stack_figure(settings: Settings, log: Path, since: float) -> str:
    line = _last_line(log, r"^local stack up")
    m = re.match(r"local stack up \(([^)]*)\).*?;\s*(.*)$", line)
    return f"{m.group(1)}; {m.group(2)}" if m else line


def etl_figure(settings: Settings, log: Path, since: float) -> str:
    from data_platform.lake import latest_manifest

    m = latest_manifest(settings.lake_uri, settings.dataset.name, settings)
    return (
        f"{m['rows_in']} rows in: {m['train_rows']} train, {m['test_rows']} test, "
        f"{m['rejects']['total']} rejected (version {m['version']})"
    )


def tune_figure(settings: Settings, log: Path, since: float) -> str:
    from ml_platform.progress import progress_path, read_progress

    p = read_progress(progress_path(settings.run_dir)) or {}
    if not p:
        return ""
    best = f"{p['best']:.4f}" if p.get("best") is not None else "none"
    first = p.get("first_trial_s")
    started = f", first trial after {first:.1f} s" if first is not None else ""
    return f"{p['done']}/{p['total']} trials, best {p['metric']} {best}{started}"


def register_figure(settings: Settings, log: Path, since: float) -> str:
    from helper.best_run import read_best_run

    best = read_best_run(settings.best_run_file)
    value = float(best.get("METRIC_VALUE", "nan"))
    return (
        f"{best.get('MODEL_NAME')} v{best.get('MODEL_VERSION')} "
        f"({best.get('METRIC_NAME')} {value:.4f}), alias challenger"
    )


def last_promotion(settings: Settings, log: Path | None = None, since: float = 0.0) -> str:
    """What the last promotion decided; empty when none ran since `since` (epoch seconds)."""
    from inference_service.promotion.flow import report_dir

    last = report_dir(settings) / "last.json"
    if not last.is_file() or last.stat().st_mtime < since:
        return ""
    report = json.loads(last.read_text(encoding="utf-8"))
    return f"v{report.get('version')} {report.get('outcome')}: {report.get('reason')}"


def promote_figure(settings: Settings, log: Path, since: float) -> str:
    return last_promotion(settings, log, since) or _last_line(log, r"\S") or "no report"


def serve_figure(settings: Settings, log: Path, since: float) -> str:
    from inference_service.serving_stack import ServingStack

    st = ServingStack(settings).status().get("state") or {}
    if not st.get("champion"):
        return "nothing served"
    canary = st.get("canary")
    split = f", canary v{canary['version']} at {st['canary_percent']} %" if canary else ""
    return f"champion v{st['champion']['version']}{split}"


def predict_figure(settings: Settings, log: Path, since: float) -> str:
    served = _last_line(log, r"^served by:").removeprefix("served by:").strip()
    row = _last_line(log, r"^row \d+:")
    return f"{row} ({served})" if served else row
