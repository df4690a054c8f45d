"""Starting and stopping the Ray that a tuning session runs on, fast on a laptop.

Inside a RayJob, Ray is KubeRay's: `start_ray(address=...)` only connects. Locally, a
private Ray is started with a small fixed resource set, and three things make its first
trial start ~4-6 s after `Tuner.fit` instead of ~11 s (bench/README.md, "Tuning"):

- Ray starts one idle worker per CPU when the driver connects; only those workers can host
  an actor at once, every other actor waits for a fresh process (~3-6 s of interpreter
  start and imports here). Ray Tune, however, gives each trial actor a `runtime_env` (a
  few environment variables), and an actor with a `runtime_env` never lands on those
  workers. On a local Ray the variables are already in every worker's environment (the
  raylet copies the driver's at `ray.init`), so the trial actors are created without one
  (`_trial_actors_share_prestarted_workers`, a wrapper around one Tune method).
- The idle workers import what a trial imports (`TRIAL_MODULES`) while the driver loads the
  data and builds the Tuner (`RAY_preload_python_modules`), not after the trial starts.
- Ray stops idle workers after 10 s; the driver's own start-up can take longer on a busy
  machine, so they are kept for the session (`RAY_idle_worker_killing_time_threshold_ms`).

The workers' imports take as long as the driver's (Ray Tune, XGBoost with scikit-learn,
MLflow: ~7 s on one core here), so the caller starts Ray before it imports them itself
(`ml_platform.tune.run_tuning`) and both import at the same time.

The last two are Ray settings the raylet reads from its environment when it starts: they
are set around `ray.init`, and only when this process starts Ray itself.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator

RAY_OBJECT_STORE_BYTES = 150 * 1024 * 1024  # iris-sized data; keeps /dev/shm use small
RAY_START_ATTEMPTS = 3

# What a trial imports (ml_platform.trial and its callees), warmed in the idle workers.
TRIAL_MODULES = (
    "ray.tune",
    "ray.tune.trainable.function_trainable",
    "pandas",
    "xgboost",
    "mlflow.tracking",
    "ml_platform.trial",
)
IDLE_WORKER_KEEP_MS = 30 * 60 * 1000
_SHARE_PRESTARTED = False  # set per local session by start_ray

# Ray Tune's own default for its trial actors' env (ray.tune.execution.class_cache): set in
# the driver's environment instead, so that local workers inherit it.
TUNE_ACTOR_ENV = {"PL_DISABLE_FORK": "1"}


def local_ray_env(preload: tuple[str, ...] = TRIAL_MODULES) -> dict[str, str]:
    """Environment defaults for a private local Ray (user-set values win)."""
    return {
        "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_preload_python_modules": ",".join(preload),
        "RAY_idle_worker_killing_time_threshold_ms": str(IDLE_WORKER_KEEP_MS),
        **TUNE_ACTOR_ENV,
    }


def start_ray(
    cpus: int,
    address: str | None = None,
    attempts: int = RAY_START_ATTEMPTS,
    fast_start: bool = True,
    preload: tuple[str, ...] = TRIAL_MODULES,
) -> float:
    """Start a private local Ray (or, inside a RayJob, connect to `address`); returns seconds.

    `fast_start=False` keeps Ray's and Tune's defaults (the benchmark's baseline); `preload`
    names what the trial function imports. Ray 2.60's
    raylet aborts when its agents take longer than a fixed window to report their ports,
    which happens on a busy 2-core machine while the agents import cold. The next attempt
    imports from a warm page cache, so a retry turns a flaky start into a slow one.
    """
    # Under `uv run` (the Taskfiles), Ray 2.60 otherwise packages the whole working directory,
    # .venv included (~2 GB), into /tmp/ray for every session; workers share this interpreter
    # anyway. Read when ray is first imported, hence before the import.
    too_late = "ray" in sys.modules and "RAY_ENABLE_UV_RUN_RUNTIME_ENV" not in os.environ
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if too_late and "UV" in os.environ:
        # ray was imported before this function: every worker (and so every Tune actor)
        # then starts through `uv run` in a freshly built venv, tens of seconds each
        print(
            "warning: ray was imported before start_ray(); set RAY_ENABLE_UV_RUN_RUNTIME_ENV=0 "
            "or import ray later, else each Ray worker builds its own venv",
            file=sys.stderr,
        )
    started = time.perf_counter()
    if address:
        ray.init(address=address, logging_level="WARNING", log_to_driver=True)
        return time.perf_counter() - started
    global _SHARE_PRESTARTED
    _SHARE_PRESTARTED = fast_start
    # the raylet (and every worker it starts) copies this environment when it starts
    with _environ(local_ray_env(preload) if fast_start else {}):
        _init_local(ray, cpus, attempts)
    if fast_start:  # imports Ray Tune (seconds): after ray.init, while the workers warm up
        _trial_actors_share_prestarted_workers()
    return time.perf_counter() - started


@contextlib.contextmanager
def _environ(defaults: dict[str, str]) -> Iterator[None]:
    """`defaults` (where unset) in os.environ for the block only."""
    added = {k: v for k, v in defaults.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def _init_local(ray, cpus: int, attempts: int) -> None:
    """`ray.init` for a private node; only a start-up timeout is retried (after clean-up)."""
    from tenacity import Retrying, retry_if_exception, stop_after_attempt

    def start() -> None:
        try:
            ray.init(
                num_cpus=cpus,
                num_gpus=0,
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
                object_store_memory=RAY_OBJECT_STORE_BYTES,
                logging_level="WARNING",
                log_to_driver=True,
            )
        except Exception:  # Ray raises a bare Exception for a node start timeout
            ray.shutdown()
            _reap_failed_ray_start()
            raise

    retrying = Retrying(
        stop=stop_after_attempt(attempts),
        retry=retry_if_exception(lambda exc: "timed out during startup" in str(exc)),
        before_sleep=lambda state: print(
            f"ray start attempt {state.attempt_number} timed out; retrying", file=sys.stderr
        ),
        reraise=True,
    )
    retrying(start)


@contextlib.contextmanager
def ray_session(cpus: int, address: str | None = None, **options) -> Iterator[float]:
    """`start_ray` for a `with` block (yields its seconds); Ray is always shut down.
    `options`: `start_ray`'s `fast_start` and `preload`."""
    try:
        yield start_ray(cpus, address, **options)
    finally:
        import ray

        ray.shutdown()


def _trial_actors_share_prestarted_workers() -> None:
    """Create Tune's trial actors without a `runtime_env`, so that they can use Ray's idle
    (already imported) workers; only for a Ray this process started.

    Tune adds `{"env_vars": ...}` to every trial actor (its defaults plus AWS_* and a few
    RAY_* variables, copied from this process). A local worker already inherits all of them
    from this process's environment at `ray.init`, so nothing is lost. If a Ray release
    changes the class this relies on, Tune keeps its own behaviour (slower, still correct).
    """
    import ray
    from ray.tune.execution import class_cache

    cache = getattr(class_cache, "_ActorClassCache", None)
    original = getattr(cache, "get", None)
    if original is None or getattr(original, "_mlp_local", False):
        return

    def get(self, trainable_cls):
        if not (_SHARE_PRESTARTED and _local_ray_running()):
            return original(self, trainable_cls)
        if trainable_cls not in self._cache:
            self._cache[trainable_cls] = ray.remote(trainable_cls)
        return self._cache[trainable_cls]

    get._mlp_local = True
    cache.get = get


def _local_ray_running() -> bool:
    """True while this process is connected to a Ray it started itself (not a cluster)."""
    import ray

    node = getattr(ray._private.worker.global_worker, "node", None)
    return bool(ray.is_initialized() and node is not None and node.is_head())


_RAY_NODE_PROCESSES = ("gcs_server", "raylet", "dashboard/agent.py", "runtime_env/agent")


def _reap_failed_ray_start() -> None:
    """Stop the Ray processes a failed `ray.init` left behind (it leaves its GCS running).

    Only children of this process are touched: another user's Ray is never affected.
    """
    import psutil

    leftovers = []
    for child in psutil.Process().children(recursive=True):
        try:
            cmdline = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if any(marker in cmdline for marker in _RAY_NODE_PROCESSES):
            leftovers.append(child)
    for proc in leftovers:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(leftovers, timeout=5)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
