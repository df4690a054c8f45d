"""The ETL job under the Spark the cluster runs (3.5.6 in the Stackable image) gives the same
output as under the main environment's PySpark: the same job file, the same raw data (iris
plus every kind of malformed line), compared on reject counts by reason, the rejected lines
themselves, split sizes per class, the rows of each split and the manifest's fields.

The second environment is its own locked project (tests/envs/spark35); this module syncs it
(`uv sync --frozen`, a no-op when current), so `./task test` / `.ci/run` need nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from data_platform import lake, make_raw
from helper.settings import REPO_ROOT, load_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROJECT = REPO_ROOT / "tests" / "envs" / "spark35"
JOB_FILE = REPO_ROOT / "data_platform" / "etl_job.py"
SPARK35 = "3.5.6"  # the Stackable image's Spark (data_platform/Dockerfile's base)
# identity and timing differ per run; everything else must agree
PER_RUN = {"version", "created_at", "paths", "raw_uri", "stages_s"}


@pytest.fixture(scope="module")
def spark35_python() -> str:
    uv = os.environ.get("UV") or shutil.which("uv")
    assert uv, "uv is needed to install tests/envs/spark35 (./task installs it)"
    proc = subprocess.run(
        [uv, "sync", "--frozen", "--quiet", "--project", str(PROJECT)],
        capture_output=True,
        text=True,
        timeout=900,
        env={k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    python = str(PROJECT / ".venv" / "bin" / "python")
    version = subprocess.run(
        [python, "-c", "import pyspark; print(pyspark.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert version == SPARK35
    return python


@pytest.fixture(scope="module")
def raw_file(tmp_path_factory) -> Path:
    spec = load_settings().dataset
    lines = make_raw.iris_lines() + [
        line.text for line in make_raw.synthetic_lines(140, spec, seed=5, malformed_fraction=0.1)
    ]
    return make_raw.write_lines(tmp_path_factory.mktemp("raw") / "mixed.data", lines)


def run_job(python: str, raw: Path, lake_uri: Path) -> dict:
    env = {
        **{k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"},
        "PYTHONPATH": str(REPO_ROOT),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "MLP_RAW_URI": str(raw),
        "MLP_LAKE_URI": str(lake_uri),
    }
    env.pop("PYSPARK_PYTHON", None)  # each run's workers use its own interpreter
    proc = subprocess.run(
        [python, str(JOB_FILE)],
        cwd=REPO_ROOT,
        env={**env, "PYSPARK_PYTHON": python},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout[proc.stdout.index("{") :])


def outputs(lake_uri: Path) -> dict:
    manifest = lake.latest_manifest(str(lake_uri), "iris")
    per_class = {
        split: Counter(pq.read_table(manifest["paths"][split]).column("label").to_pylist())
        for split in ("train", "test")
    }
    rows = {
        split: sorted(
            tuple(r.values()) for r in pq.read_table(manifest["paths"][split]).to_pylist()
        )
        for split in ("train", "test")
    }
    rejects = pq.read_table(manifest["paths"]["rejects"]).to_pylist()
    return {
        "manifest": {k: v for k, v in manifest.items() if k not in PER_RUN},
        "per_class": per_class,
        "rows": rows,  # the same rows on the same side, not only the same counts
        "rejects": sorted((r["raw_line"], r["reason"]) for r in rejects),
    }


def test_the_job_gives_the_same_output_under_spark_35_and_the_main_pyspark(
    spark35_python, raw_file, tmp_path
):
    main = run_job(sys.executable, raw_file, tmp_path / "main")
    old = run_job(spark35_python, raw_file, tmp_path / "spark35")
    assert old["status"] == main["status"] == "published"
    assert old["rejects"]["by_reason"] == main["rejects"]["by_reason"]
    assert set(main["rejects"]["by_reason"]) >= {"wrong_column_count", "non_numeric"}
    a, b = outputs(tmp_path / "main"), outputs(tmp_path / "spark35")
    assert b["manifest"] == a["manifest"]
    assert b["per_class"] == a["per_class"]
    assert b["rejects"] == a["rejects"]
    assert b["rows"] == a["rows"]
    assert sum(a["per_class"]["test"].values()) == a["manifest"]["test_rows"] > 0
