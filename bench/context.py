"""What every bench part receives: settings, mode, where to write, and the shared model."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from helper.settings import Settings


@dataclass
class BenchContext:
    settings: Settings
    smoke: bool
    out_dir: Path  # results: JSON, Markdown, PNG
    work_dir: Path  # this run's scratch space: bodies, logs, temp lakes, pid files
    given_model_dir: Path | None = None
    serving_configs: Sequence[str] = ("native", "pyfunc", "mlserver", "canary")
    etl_sizes: Sequence[int] | None = None
    started: float = field(default_factory=time.perf_counter)
    _model_dir: Path | None = None

    def log(self, message: str) -> None:
        print(f"[bench {time.perf_counter() - self.started:7.1f}s] {message}", file=sys.stderr)

    def model_dir(self) -> Path:
        """The MLflow model every serving configuration and the limit use (built once)."""
        if self._model_dir is None:
            if self.given_model_dir is not None:
                if not (self.given_model_dir / "MLmodel").is_file():
                    raise ValueError(f"model_dir: no MLmodel file under {self.given_model_dir}")
                self._model_dir = self.given_model_dir
            else:
                from bench.bench_model import build_model

                self._model_dir = build_model(self.work_dir / "model", self.settings)
        return self._model_dir
