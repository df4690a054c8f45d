"""The local fast start's pieces that need no running Ray."""

from __future__ import annotations

import os

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
