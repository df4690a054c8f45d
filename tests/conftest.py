"""Shared fixtures. Area-specific fixtures live in the test modules or sub-conftests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from helper.object_store import free_s3_port
from helper.processes import free_port
from helper.settings import REPO_ROOT, Settings, get_settings, load_settings


def _stack_env(tmp: Path) -> dict[str, str]:
    s3_port, mlflow_port = free_s3_port(), free_port()
    return {
        "MLP_STATE_DIR": str(tmp / "state"),
        "MLP_LAKE_URI": str(tmp / "lake"),
        "MLP_S3_PORT": str(s3_port),
        "MLP_MLFLOW_PORT": str(mlflow_port),
        "MLP_SERVE_PORT": str(free_port()),
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "RAY_USAGE_STATS_ENABLED": "0",
    }


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A running object store (SeaweedFS) + MLflow server on free ports, with temp state
    and lake: the same local-stack code as `task local:up`.

    The environment is set for the whole session so that subprocesses (ETL, tune,
    register, predictors) started by tests see the same stack; it is restored after.
    """
    from ops.local_stack import LocalStack

    tmp = tmp_path_factory.mktemp("stack")
    env = _stack_env(tmp)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()
    settings = load_settings()
    for key, value in settings.s3_env().items():
        saved.setdefault(key, os.environ.get(key))
        os.environ[key] = value
    stack = LocalStack(settings)
    try:
        stack.up()
        yield settings
    finally:
        stack.down()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
