"""`./task pipeline` as a user runs it, on the second data set (breast cancer, binary labels,
header line, feature names with spaces) with only `MLP_DATASET_CONFIG` changed from a private
stack's environment: it must reach a served prediction, print one line per stage and a
summary within 40 lines, and keep the libraries' chatter in the stage logs.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from bench.pipeline import pipeline_env
from helper.settings import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STAGES = ("local:up", "data:etl", "ml:tune", "ml:register", "promote", "serve:up",
          "serve:predict")  # fmt: skip
CHATTER = ("Downloading artifacts", "View run", "WARN", "INFO", "Trial name", "task: [")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    work = tmp_path_factory.mktemp("bc-pipeline")
    env = {**os.environ, **pipeline_env(work), "MLP_BEST_RUN_FILE": str(work / ".env.best_run")}
    env.pop("VERBOSE", None)
    env["MLP_DATASET_CONFIG"] = str(REPO_ROOT / "data_platform/datasets/breast_cancer.yaml")
    try:
        result = subprocess.run(
            [str(REPO_ROOT / "task"), "pipeline", "SMOKE=1"], cwd=REPO_ROOT, env=env,
            capture_output=True, text=True, timeout=1500,
        )  # fmt: skip
        yield result, work
    finally:
        subprocess.run([str(REPO_ROOT / "task"), "serve:down", "local:down"], cwd=REPO_ROOT,
                       env=env, capture_output=True, timeout=300)  # fmt: skip


def test_pipeline_on_the_second_data_set_reaches_a_prediction(run):
    result, _ = run
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    predict = [line for line in result.stdout.splitlines() if "serve:predict" in line]
    assert predict and predict[0].startswith("ok"), out
    assert "label=malignant" in predict[0] or "label=benign" in predict[0], predict
    assert "breast-cancer-classifier v1" in result.stdout, result.stdout


def test_pipeline_prints_a_line_per_stage_and_a_summary_within_40_lines(run):
    result, work = run
    lines = (result.stdout + result.stderr).splitlines()
    assert len(lines) <= 40, "\n".join(lines)
    for stage in STAGES:
        mine = [line for line in lines if line.split()[1:2] == [stage]]
        assert len(mine) == 1 and mine[0].startswith("ok"), (stage, lines)
    assert "== pipeline summary ==" in lines
    noisy = [line for line in lines if any(word in line for word in CHATTER)]
    assert not noisy, noisy


def test_library_output_goes_to_the_stage_logs(run):
    _, work = run
    logs = work / "state" / "logs" / "pipeline"
    assert sorted(p.stem for p in logs.glob("*.log")) == sorted(s.replace(":", "-") for s in STAGES)
    assert "Trial name" in (logs / "ml-tune.log").read_text()  # Ray Tune's table, kept
    assert "569" in (logs / "data-etl.log").read_text()  # the ETL's manifest, kept
