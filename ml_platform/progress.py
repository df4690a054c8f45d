"""Tuning progress as a small JSON file, so a watcher (the pipeline runner's progress bar) can
show trials done / total and the best so far without parsing Ray's console output.

`progress_callback` returns a Ray Tune `Callback` that runs in the driver (Tune's controller),
never in a trial worker: it rewrites `path` atomically after every trial event. The file also
records when the first trial started, measured from the Tuner's start (`first_trial_s`).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from helper.atomic import atomic_write


def progress_path(run_dir: Path) -> Path:
    """Beside the pid files, in the settings' `run_dir`."""
    return Path(run_dir) / "tune-progress.json"


def read_progress(path: Path) -> dict | None:
    """The latest progress, or None before the first write (or for a torn/foreign file)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class ProgressState:
    """The figures a watcher shows; `better` follows the metric's mode."""

    def __init__(self, total: int, metric: str, mode: str) -> None:
        self.total, self.metric, self.mode = total, metric, mode
        self.started_at = time.time()
        self.first_trial_s: float | None = None
        self.running = self.done = self.errors = 0
        self.best: float | None = None

    def better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def offer(self, result: dict | None) -> None:
        value = (result or {}).get(self.metric)
        if isinstance(value, int | float) and math.isfinite(value) and self.better(value):
            self.best = float(value)

    def as_dict(self) -> dict:
        return {
            "total": self.total, "done": self.done, "running": self.running,
            "errors": self.errors, "metric": self.metric, "mode": self.mode, "best": self.best,
            "first_trial_s": self.first_trial_s,
            "elapsed_s": round(time.time() - self.started_at, 2),
        }  # fmt: skip


def write_progress(path: Path, state: ProgressState) -> None:
    atomic_write(Path(path), json.dumps(state.as_dict()))


def progress_callback(path: Path, total: int, metric: str, mode: str):
    """A Tune Callback writing `path`; best so far counts completed trials' last results."""
    from ray.tune import Callback

    class _Progress(Callback):
        def __init__(self) -> None:
            self.state = ProgressState(total, metric, mode)
            write_progress(path, self.state)

        def on_trial_start(self, iteration, trials, trial, **info):
            if self.state.first_trial_s is None:
                self.state.first_trial_s = round(time.time() - self.state.started_at, 3)
            self.state.running += 1
            write_progress(path, self.state)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.state.running = max(0, self.state.running - 1)
            self.state.done += 1
            self.state.offer(trial.last_result)
            write_progress(path, self.state)

        def on_trial_error(self, iteration, trials, trial, **info):
            self.state.running = max(0, self.state.running - 1)
            self.state.done += 1
            self.state.errors += 1
            write_progress(path, self.state)

    return _Progress()
