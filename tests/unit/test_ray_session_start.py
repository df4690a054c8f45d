"""The local fast start's pieces that need no running Ray."""

from __future__ import annotations

import os

import pytest

from ml_platform import ray_session


def test_local_env_preloads_what_a_trial_imports_and_keeps_idle_workers():
    env = ray_session.local_ray_env()
    assert env["RAY_preload_python_modules"].split(",") == list(ray_session.TRIAL_MODULES)
    assert int(env["RAY_idle_worker_killing_time_threshold_ms"]) >= 10 * 60 * 1000
    # Tune's own default for trial actors, now inherited from the raylet's environment
    assert env["PL_DISABLE_FORK"] == "1"


def test_every_preloaded_module_exists():
    # Ray logs and skips a preload it cannot import: a typo would silently cost the speed-up
    import importlib.util

    for name in ray_session.TRIAL_MODULES:
        assert importlib.util.find_spec(name) is not None, name


def test_environ_sets_only_unset_keys_and_restores(monkeypatch):
    monkeypatch.setenv("MLP_TEST_KEEP", "user")
    monkeypatch.delenv("MLP_TEST_ADDED", raising=False)
    with ray_session._environ({"MLP_TEST_KEEP": "ours", "MLP_TEST_ADDED": "1"}):
        assert os.environ["MLP_TEST_KEEP"] == "user"
        assert os.environ["MLP_TEST_ADDED"] == "1"
    assert os.environ["MLP_TEST_KEEP"] == "user"
    assert "MLP_TEST_ADDED" not in os.environ


def test_environ_restores_after_an_error(monkeypatch):
    monkeypatch.delenv("MLP_TEST_ADDED", raising=False)
    try:
        with ray_session._environ({"MLP_TEST_ADDED": "1"}):
            raise RuntimeError("ray.init failed")
    except RuntimeError:
        pass
    assert "MLP_TEST_ADDED" not in os.environ


def test_tune_actor_class_cache_still_has_the_method_the_fast_start_wraps():
    # if a Ray release renames it, the fast start silently falls back to Tune's behaviour:
    # this test says so instead
    from ray.tune.execution import class_cache

    assert callable(getattr(class_cache._ActorClassCache, "get", None))
    assert class_cache.DEFAULT_ENV_VARS == ray_session.TUNE_ACTOR_ENV


class _FlakyRay:
    """`ray.init` that raises the given errors in turn, then succeeds."""

    def __init__(self, *errors: Exception):
        self.errors, self.inits, self.shutdowns = list(errors), 0, 0

    def init(self, **_kwargs):
        self.inits += 1
        if self.errors:
            raise self.errors.pop(0)

    def shutdown(self):
        self.shutdowns += 1


def test_only_a_start_up_timeout_is_retried_after_clean_up():
    from ml_platform.ray_session import _init_local

    timeout = Exception("The current node timed out during startup.")
    ray = _FlakyRay(timeout, timeout)
    _init_local(ray, cpus=1, attempts=3)
    assert (ray.inits, ray.shutdowns) == (3, 2)

    ray = _FlakyRay(timeout, timeout)
    with pytest.raises(Exception, match="timed out during startup"):
        _init_local(ray, cpus=1, attempts=2)
    assert ray.inits == 2

    ray = _FlakyRay(ValueError("bad argument"))
    with pytest.raises(ValueError, match="bad argument"):
        _init_local(ray, cpus=1, attempts=3)
    assert (ray.inits, ray.shutdowns) == (1, 1)


def test_the_tuning_cli_imports_nothing_heavy_before_ray_starts():
    # `python -m ml_platform.tune` starts Ray before MLflow/XGBoost/pandas/Ray Tune are
    # imported (ml_platform.tune_session), so that Ray's workers import them meanwhile; a
    # module-level import of any of them in the CLI's chain would serialise the two again
    import subprocess
    import sys

    heavy = ("mlflow", "xgboost", "pandas", "sklearn", "ray", "optuna")
    probe = (
        f"import sys, ml_platform.tune; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == ""
