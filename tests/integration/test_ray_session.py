"""A local Ray session hosts Tune's first trials on the workers Ray started with it, with the
trial's imports already done, and with the environment Tune would have given the actor."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]

# Runs in its own interpreter: Ray reads its settings from the environment at `ray.init`,
# and a test process may already have imported ray.
PROBE = textwrap.dedent(
    """
    import json, os, sys, time
    from ml_platform.ray_session import ray_session

    def trainable(config):
        from ray import tune
        tune.report({
            "score": 1.0,
            "pid": os.getpid(),
            "preloaded": "xgboost" in sys.modules and "mlflow.tracking" in sys.modules,
            "pl_disable_fork": os.environ.get("PL_DISABLE_FORK"),
        })

    def idle_workers():
        import psutil
        pids = []
        for proc in psutil.Process().children(recursive=True):
            try:
                if "ray::IDLE" in " ".join(proc.cmdline()):
                    pids.append(proc.pid)
            except psutil.Error:
                pass
        return pids

    with ray_session(cpus=2):
        from ray import tune
        storage = sys.argv[1]
        deadline = time.time() + 60
        while len(idle_workers()) < 2 and time.time() < deadline:
            time.sleep(0.2)
        prestarted = idle_workers()
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            param_space={"x": tune.grid_search([1, 2])},
            tune_config=tune.TuneConfig(metric="score", mode="max", reuse_actors=True),
            run_config=tune.RunConfig(name="probe", storage_path=storage, verbose=0),
        )
        grid = tuner.fit()
        print(json.dumps({"prestarted": prestarted, "trials": [r.metrics for r in grid]}))
    """
)


def test_first_trials_run_on_prestarted_warm_workers(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "PL_"))}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / "ray_results")],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    import json

    result = json.loads(out.stdout.strip().splitlines()[-1])
    trials = result["trials"]
    assert len(trials) == 2
    for trial in trials:
        # a process Ray started with the session, before the Tuner existed: not a fresh
        # worker per trial actor (Tune's runtime_env would have forced one)
        assert trial["pid"] in result["prestarted"], (trial, result["prestarted"])
        assert trial["preloaded"], trial
        assert trial["pl_disable_fork"] == "1", trial
