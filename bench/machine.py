"""Where and with what a run was measured: the figures mean nothing without it."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

import psutil

from helper.settings import REPO_ROOT

KEY_PACKAGES = (
    "xgboost-cpu",
    "xgboost",
    "kserve",
    "mlflow",
    "ray",
    "pyspark",
    "pyarrow",
    "pandas",
    "numpy",
    "optuna",
    "scikit-learn",
    "uvicorn",
    "httpx",
    "httptools",
    "uvloop",
)


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (platform.processor() is often empty)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict:
    mem = psutil.virtual_memory()
    return {
        "hostname": platform.node(),
        "cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gib": round(mem.total / 2**30, 1),
        "cpu_model": cpu_model(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def package_versions(names: tuple[str, ...] = KEY_PACKAGES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def git_commit(repo: Path = REPO_ROOT) -> str | None:
    """HEAD's hash plus `-dirty` when the tree has changes; None outside git or before a commit."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{head}-dirty" if dirty else head
