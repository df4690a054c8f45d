"""MLflow's process-wide tracking URI is set only for the calls that need it, and put back:
a leaked MLFLOW_TRACKING_URI sent later tests' subprocesses to a stopped server."""

from __future__ import annotations

import os

import mlflow

from ml_platform.tracking import tracking_uri_scope


def test_scope_sets_the_uri_and_clears_it_after(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with tracking_uri_scope("http://127.0.0.1:1"):
        assert mlflow.get_tracking_uri() == "http://127.0.0.1:1"
        assert os.environ["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:1"
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert mlflow.get_tracking_uri() != "http://127.0.0.1:1"


def test_scope_restores_the_callers_variable_even_on_error(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:2")
    try:
        with tracking_uri_scope("http://127.0.0.1:3"):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:2"
    assert mlflow.get_tracking_uri() == "http://127.0.0.1:2"
