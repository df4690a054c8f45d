"""The ETL job as a real process (`python -m data_platform.etl_job`), lake in a temp dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data_platform import lake, make_raw
from helper.settings import REPO_ROOT, load_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def run_job(env_overrides: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", **env_overrides}
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "data_platform.etl_job", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc, time.perf_counter() - started


def test_job_publishes_iris_then_a_bad_file_leaves_it_current(tmp_path):
    lake_uri = str(tmp_path / "lake")
    ok, wall = run_job({"MLP_LAKE_URI": lake_uri})
    assert ok.returncode == 0, ok.stderr[-3000:]
    summary = json.loads(ok.stdout[ok.stdout.index("{") :])
    print(f"cold local ETL run on iris: {wall:.1f} s wall (job {summary['duration_s']} s)")

    manifest = lake.latest_manifest(lake_uri, "iris")
    assert summary["version"] == manifest["version"]
    assert manifest["raw_uri"] == str(load_settings().raw_uri)
    assert (manifest["rows_in"], manifest["rows_out"]) == (150, 150)
    train, test = lake.read_split(manifest, "train"), lake.read_split(manifest, "test")
    assert len(train) + len(test) == 150
    assert len(test) == 30

    bad = make_raw.synthetic_lines(100, load_settings().dataset, seed=1, malformed_fraction=0.5)
    raw = make_raw.write_lines(tmp_path / "bad.data", [line.text for line in bad])
    refused, _ = run_job({"MLP_LAKE_URI": lake_uri, "MLP_RAW_URI": str(raw)})
    assert refused.returncode == 1
    assert "reject ratio 0.5000 exceeds" in refused.stderr
    assert json.loads(refused.stdout[refused.stdout.index("{") :])["status"] == "failed"
    assert lake.latest_manifest(lake_uri, "iris") == manifest
    assert len(list(Path(lake_uri, "iris").glob("*/*"))) == 1


def test_a_bad_setting_fails_fast_naming_the_field(tmp_path):
    proc, _ = run_job({"MLP_LAKE_URI": str(tmp_path), "MLP_MAX_REJECT_RATIO": "2"})
    assert proc.returncode != 0
    assert "max_reject_ratio" in proc.stderr
    assert not list(tmp_path.iterdir())
