"""Entry points refuse bad configuration at start-up with one clear line, never a traceback.

Each case starts the real CLI as a Python process (no server, no network: validation fails
before anything is contacted). The processes run in a temp directory so a developer's `.env`
in the repo root cannot change the outcome. Import cost dominates: data_platform.etl_job
~1.5 s; ml_platform.register ~6 s and ml_platform.tune ~8 s (MLflow, pandas, pyarrow);
inference_service.server ~7 s (kserve parses argv at import time).

The second half checks, in-process, the decisions behind tune/register's fault handling
(MLflow retry variables, which session may be registered, how a failed session ends).
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
        "invalid setting num_samples: Input should be greater than or equal to 1, got -1",
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


# --- the decisions behind tune/register's fault handling (pure, in-process) ------------


def test_tracking_settings_become_mlflow_http_variables_mlflow_can_parse(monkeypatch):
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        MLFLOW_HTTP_REQUEST_TIMEOUT,
    )

    from helper.settings import load_settings
    from ml_platform import tracking

    settings = load_settings(
        tracking_max_retries=3, tracking_backoff_factor=0, tracking_timeout_s=7
    )
    for key, value in tracking.http_env(settings).items():
        monkeypatch.setenv(key, value)
    assert MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 3
    assert MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR.get() == 0
    assert MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 7


class _Run:
    def __init__(self, run_id: str, status: str):
        self.info = type("Info", (), {"run_id": run_id, "status": status})()


class _Sessions:
    """Stands in for the MLflow client: returns sessions newest first, like the server."""

    def __init__(self, *runs: _Run):
        self.runs = list(runs)

    def search_runs(self, experiment_ids, filter_string, order_by, max_results):
        return self.runs[:max_results]


@pytest.mark.parametrize("status", ["FAILED", "KILLED", "RUNNING"])
def test_register_refuses_when_the_newest_session_is_not_finished(status):
    from ml_platform.selection import RegistryRefusal, latest_session

    client = _Sessions(_Run("new", status), _Run("old", "FINISHED"))
    with pytest.raises(RegistryRefusal, match=f"session new is {status}, not FINISHED"):
        latest_session(client, "1")


def test_register_uses_the_newest_session_when_it_finished():
    from ml_platform.selection import latest_session

    client = _Sessions(_Run("new", "FINISHED"), _Run("old", "FAILED"))
    assert latest_session(client, "1").info.run_id == "new"


def test_a_session_with_an_errored_trial_fails_naming_the_count():
    from types import SimpleNamespace

    from ml_platform.tune_session import TuningFailed, _raise_on_trial_errors

    grid = [
        SimpleNamespace(error=None),
        SimpleNamespace(error=RuntimeError("trace...\nMlflowException: connection refused")),
        SimpleNamespace(error=None),
    ]
    with pytest.raises(TuningFailed, match="^1 of 3 trials failed; first: MlflowException: conn"):
        _raise_on_trial_errors(grid)
    _raise_on_trial_errors(grid[:1])  # no error: no exception


class _DeadClient:
    def log_batch(self, *args, **kwargs):
        raise ConnectionError("refused")

    def set_terminated(self, *args, **kwargs):
        raise ConnectionError("refused")


def test_closing_a_failed_session_on_a_dead_server_warns_and_keeps_the_real_error(capsys):
    from ml_platform.tune_session import _close_parent

    _close_parent(_DeadClient(), "p1", "FAILED", {"wall_s": 1.0})
    assert "could not mark parent run p1 FAILED (ConnectionError)" in capsys.readouterr().err
    with pytest.raises(ConnectionError):  # a session that would have FINISHED must not pass
        _close_parent(_DeadClient(), "p1", "FINISHED", {"wall_s": 1.0})
