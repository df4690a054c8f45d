"""The Spark job and the single-process pyarrow baseline (bench/etl_baseline.py) agree exactly
on a generated file holding every reject kind: reject counts by reason (also against what
make_raw intended) and split sizes per class, read back from what each wrote.

The two implement the same rules independently (Spark expressions vs pyarrow compute) and
split with different hashes, so this checks the job's optimised parse and one-aggregation
tally against a second implementation rather than against itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from bench.etl_baseline import run_baseline
from data_platform import lake, make_raw
from data_platform.rejects import REASONS
from helper.settings import REPO_ROOT, load_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROWS = 40_000


def _per_class(directory: str | Path) -> Counter:
    return Counter(pq.read_table(directory, columns=["label"]).column("label").to_pylist())


def test_spark_job_and_pyarrow_baseline_agree_on_rejects_and_split_sizes(tmp_path):
    settings = load_settings()
    raw = tmp_path / "raw.data"
    # small chunks: several chunks, each with its own share of every kind
    expect = make_raw.write_synthetic(
        raw, ROWS, settings.dataset, seed=3, malformed_fraction=0.05, chunk=15_000
    )
    assert set(expect) == {None, *REASONS}

    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "MLP_LAKE_URI": str(tmp_path / "lake")}
    proc = subprocess.run(
        [sys.executable, "-m", "data_platform.etl_job", "--raw-uri", str(raw)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = lake.latest_manifest(str(tmp_path / "lake"), settings.dataset.name)
    base = run_baseline(
        raw, tmp_path / "base", settings.dataset, settings.seed, settings.test_fraction
    )

    intended = {k: v for k, v in expect.items() if k}
    assert manifest["rejects"]["by_reason"] == base["rejects_by_reason"] == intended
    assert manifest["rows_out"] == base["rows_out"] == expect[None]
    assert (manifest["train_rows"], manifest["test_rows"]) == (
        base["train_rows"],
        base["test_rows"],
    )
    for split in ("train", "test"):
        spark_sizes = _per_class(manifest["paths"][split])
        assert spark_sizes == _per_class(tmp_path / "base" / split), split
        assert sum(spark_sizes.values()) == manifest[f"{split}_rows"]
    rejected = pq.read_table(manifest["paths"]["rejects"]).column("reason").to_pylist()
    assert Counter(rejected) == Counter(intended)
    print(json.dumps({"stages_s": manifest["stages_s"], "baseline_s": base["duration_s"]}))
