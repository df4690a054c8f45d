"""Smoke run of every bench part through the real CLI: checks the harness's output is
well formed (JSON keys, tables, plots, goals), not how fast anything is."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helper.settings import REPO_ROOT

pytestmark = [pytest.mark.bench, pytest.mark.integration]

PARTS = ("limit", "serving", "tuning", "etl", "pipeline")
EXPECTED_PLOTS = {
    "serving_latency.png",
    "serving_throughput.png",
    "etl_scaling.png",
    "tuning_best_so_far.png",
}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, float]:
    """One smoke run of all parts (~2.5 min on a quiet 2-core machine; longer when shared)."""
    out = tmp_path_factory.mktemp("bench-results")
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    seconds = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((out / "latest.json").read_text()), out, seconds


def test_run_document_has_machine_versions_and_every_part(smoke_run):
    doc, out, _ = smoke_run
    assert doc["smoke"] is True
    assert {"cores", "memory_gib", "cpu_model"} <= set(doc["machine"])
    assert doc["machine"]["cores"] >= 1
    assert {"kserve", "mlflow", "ray", "pyspark"} <= set(doc["versions"])
    assert "git_commit" in doc
    assert list(doc["parts"]) == list(PARTS)  # the runner's fixed order
    for name, part in doc["parts"].items():
        assert "error" not in part, f"{name}: {part.get('error')}"
        assert part["table"]["rows"], f"{name}: empty table"
    assert (out / f"bench-{doc['run_id']}.json").is_file()


def test_serving_measures_every_config_and_case(smoke_run):
    serving = smoke_run[0]["parts"]["serving"]
    assert serving["generator"]
    assert serving["configs"]["mlserver"]["status"] == "not measured in smoke mode"
    for cfg in ("native", "pyfunc", "canary"):
        cases = serving["configs"][cfg]["cases"]
        assert set(cases) == {"single_c1", "single_c8", "batch_100", "batch_10000"}
        for case in cases.values():
            assert case["requests"] > 0 and case["errors"] == 0
            assert 0 < case["p50_ms"] <= case["p99_ms"]
            assert case["peak_rss_mib"] > 0
    split = serving["configs"]["canary"]["version_split"]
    assert set(split) <= {"1", "2"} and sum(split.values()) == 100


def test_limit_and_fraction_of_it(smoke_run):
    doc = smoke_run[0]
    batches = doc["parts"]["limit"]["batches"]
    assert set(batches) == {"1", "100", "10000"}
    assert all(b["rows_per_s"] > 0 for b in batches.values())
    fractions = doc["derived"]["serving_fraction_of_limit"]
    assert set(fractions) == {"single_c1", "batch_100", "batch_10000"}


def test_etl_baseline_agrees_with_the_spark_job(smoke_run):
    etl = smoke_run[0]["parts"]["etl"]
    (size,) = etl["sizes"]
    assert size["spark"]["ok"] and size["pyarrow"]["ok"]
    assert size["spark"]["rows_in"] == size["pyarrow"]["rows_in"] == size["rows"]
    # same reject reasons and counts, same number of good rows
    assert size["same_rejects"] is True and size["same_split_sizes"] is True
    assert sum(size["spark"]["rejects_by_reason"].values()) > 0


def test_tuning_has_both_searches_with_curves(smoke_run):
    tuning = smoke_run[0]["parts"]["tuning"]
    for name in ("ours", "original"):
        search = tuning["searches"][name]
        assert search["trials"] == tuning["trials_each"]
        assert search["completed"] >= 1
        times = [t for t, _ in search["best_so_far"]]
        accs = [a for _, a in search["best_so_far"]]
        assert times == sorted(times) and accs == sorted(accs)  # best-so-far never drops
        assert 0.0 < search["best_accuracy"] <= 1.0
    assert tuning["searches"]["original"]["stopped_early"] == 0
    ab = tuning["first_trial"]  # the same-run comparison of Ray defaults vs the fast start
    for label in ("ray_defaults", "fast_start"):  # fresh processes: their start comes first
        figures = ab[label]
        assert 0 < figures["first_trial_start_s"] < figures["first_trial_from_launch_s"]
        assert figures["ray_start_s"] > 0 and len(figures["runs"]) >= 1


def test_pipeline_smoke_started_and_stopped_a_stack(smoke_run):
    pipe = smoke_run[0]["parts"]["pipeline"]
    assert pipe["mode"] == "smoke" and pipe["ok"]
    assert pipe["peak_rss_mib"] > 0 and pipe["peak_processes"] >= 2  # store + mlflow at least
    assert pipe["store_peak_rss_mib"] > 0  # the store (weed) was found and measured
    assert pipe["steps"], "no task steps recorded"


def test_goals_markdown_and_plots(smoke_run):
    doc, out, _ = smoke_run
    assert len(doc["goals"]) == 8  # serving x3, ETL x2, tuning, first trial, pipeline
    assert all(g["met"] in (True, False, None) and g["measured"] for g in doc["goals"])
    by_goal = {g["goal"]: g for g in doc["goals"]}
    assert by_goal["serving single-row c=1 vs MLServer"]["met"] is None  # MLServer skipped
    assert by_goal["ETL Spark vs pyarrow at 10^7 rows"]["met"] is not None  # smoke size ran
    md = (out / "latest.md").read_text()
    for heading in ("## Goals", *(f"## {p}" for p in PARTS), "## Plots"):
        assert heading in md
    assert md.count("| native | ") == 4
    assert set(doc["plots"]) == EXPECTED_PLOTS
    for name in EXPECTED_PLOTS:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
