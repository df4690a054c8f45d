"""SIGKILL the ETL job while it writes a new version: the previous published version stays
the lake's latest and readable, and the half-written version is invisible (no manifest).

The kill goes to the job's whole process group (Python driver and its JVM) as soon as the
new version's directory appears, i.e. once the first Parquet write has started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data_platform import lake, make_raw
from helper.settings import REPO_ROOT, load_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _job(lake_uri: str, log: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "MLP_LAKE_URI": lake_uri}
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "data_platform.etl_job", *args],
            cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the kill reaches the JVM too
        )  # fmt: skip


def _wait_for_new_version(root: Path, known: set[Path], proc: subprocess.Popen) -> Path:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        fresh = set(root.glob("*/*")) - known
        if fresh:
            return fresh.pop()
        time.sleep(0.02)
    raise AssertionError(f"no new version directory appeared (job exit {proc.poll()})")


def test_sigkill_mid_write_leaves_the_previous_version_current(tmp_path):
    settings = load_settings()
    lake_uri, root = str(tmp_path / "lake"), tmp_path / "lake" / settings.dataset.name
    log = tmp_path / "first.log"
    first = _job(lake_uri, log)
    assert first.wait(timeout=600) == 0, log.read_text()[-3000:]
    before = lake.latest_manifest(lake_uri, settings.dataset.name)

    raw = tmp_path / "big.data"
    make_raw.write_synthetic(raw, 400_000, settings.dataset, malformed_fraction=0.01)
    proc = _job(lake_uri, tmp_path / "killed.log", "--raw-uri", str(raw))
    try:
        new = _wait_for_new_version(root, set(root.glob("*/*")), proc)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL  # killed, not finished before the kill

    assert not (new / lake.MANIFEST).exists()
    assert lake.latest_manifest(lake_uri, settings.dataset.name) == before
    train = lake.read_split(before, "train")
    assert len(train) == before["train_rows"]
