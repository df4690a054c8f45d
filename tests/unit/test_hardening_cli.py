"""Entry points refuse bad configuration at start-up with one clear line, never a traceback.

Each case starts the real CLI as a Python process (no server, no network: validation fails
before anything is contacted). The processes run in a temp directory so a developer's `.env`
in the repo root cannot change the outcome. Import cost dominates: data_platform.etl_job
~1.5 s; ml_platform.register ~6 s and ml_platform.tune ~8 s (MLflow, pandas, pyarrow);
inference_service.server ~7 s (kserve parses argv at import time).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helper.settings import REPO_ROOT

CASES = {
    "tune-negative-num-samples": (
        ["ml_platform.tune", "--num-samples", "-1"],
        {},
        "invalid setting num_samples: must be >= 1, got -1",
    ),
    "tune-negative-budget-setting": (
        ["ml_platform.tune"],
        {"MLP_TUNE_TIME_BUDGET_S": "-5"},
        "invalid setting tune_time_budget_s:",
    ),
    "tune-tracking-uri-not-http": (
        ["ml_platform.tune"],
        {"MLP_TRACKING_URI": "localhost:5000"},
        "invalid setting: tracking_uri: 'localhost:5000' is not an http(s) URL",
    ),
    "tune-negative-retries": (
        ["ml_platform.tune"],
        {"MLP_TRACKING_MAX_RETRIES": "-1"},
        "invalid setting tracking_max_retries:",
    ),
    "register-unknown-metric": (
        ["ml_platform.register"],
        {"MLP_METRIC": "f1"},
        "invalid setting metric: Input should be 'accuracy', 'recall_macro' or 'log_loss'",
    ),
    "register-threshold-not-a-number": (
        ["ml_platform.register"],
        {"MLP_MIN_METRIC": "abc"},
        "invalid setting min_metric:",
    ),
    "etl-lake-uri-ftp": (
        ["data_platform.etl_job"],
        {"MLP_LAKE_URI": "ftp://x"},
        "invalid setting: lake_uri: unsupported scheme 'ftp://'",
    ),
    "etl-raw-uri-s3-without-bucket": (
        ["data_platform.etl_job", "--raw-uri", "s3:///iris.data"],
        {},
        "invalid setting: raw_uri: 's3:///iris.data' names no bucket",
    ),
    "etl-test-fraction-flag": (
        ["data_platform.etl_job", "--test-fraction", "2"],
        {},
        "invalid setting test_fraction:",
    ),
    "server-port-out-of-range": (
        [
            "inference_service.server",
            "--model_name",
            "m",
            "--model_dir",
            ".",
            "--http_port",
            "99999",
        ],
        {},
        "error: argument --http_port: 99999 is outside 1..65535",
    ),
    "server-port-not-a-number": (
        ["inference_service.server", "--model_name", "m", "--model_dir", ".", "--http_port", "x"],
        {},
        "error: argument --http_port: invalid int value: 'x'",
    ),
    "server-serve-port-setting-zero": (
        ["inference_service.server", "--model_name", "m", "--model_dir", "."],
        {"MLP_SERVE_PORT": "0"},
        "invalid setting serve_port:",
    ),
}


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    """The caller's environment minus platform variables a test session may have exported."""
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLP_", "MLFLOW_", "AWS_", "RAY_ADDRESS"))
    }
    return {**keep, "PYTHONPATH": str(REPO_ROOT), "MLFLOW_DISABLE_TELEMETRY": "true", **extra}


# Modules that import MLflow/kserve take 5-9 s to reach their settings check: marked slow.
_SLOW_MODULES = {"ml_platform.tune", "ml_platform.register", "inference_service.server"}


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(name, marks=pytest.mark.slow) if argv[0] in _SLOW_MODULES else name
        for name, (argv, _, _) in CASES.items()
    ],
)
def test_bad_configuration_fails_with_one_clear_line(case, tmp_path):
    argv, env, expected = CASES[case]
    result = subprocess.run(
        [sys.executable, "-m", *argv],
        cwd=tmp_path,
        env=_clean_env(env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-2000:]
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    if "error: argument" in expected:  # argparse: usage lines, then exactly one error line
        errors = [ln for ln in lines if "error:" in ln]
        assert len(errors) == 1 and errors[0].endswith(expected), result.stderr
    else:
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(expected), lines[0]
