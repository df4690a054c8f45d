"""Time to the first trial, one fresh process per measurement.

Only a fresh process shows how a session's own imports and Ray's worker start-up overlap
(in the bench's own process everything is imported already). Two variants:

- `defaults`: a plain Ray Tune script: the session's modules imported first, then Ray with
  Ray's and Tune's defaults, then `Tuner.fit`.
- `fast`: what `ml:tune` does (`ml_platform.tune.run_tuning`): Ray first, with
  `ml_platform.ray_session`'s fast start, then the session's imports, then the data and
  `Tuner.fit`.

Both run the product's search on the tuning part's digits split, without MLflow; `first_trial_ab`
runs them alternately for the tuning part.
`python -m bench.first_trial defaults|fast STORAGE_DIR CPUS MAX_ROUNDS SEED` prints one JSON
line: seconds to the first trial's start from `Tuner.fit` and from the process's start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psutil

VARIANTS = ("defaults", "fast")


def _import_session() -> None:
    """What a tuning session imports besides Ray: ml_platform.tune_session and Ray Tune."""
    import ray.tune  # noqa: F401

    import ml_platform.tune_session  # noqa: F401


def measure(variant: str, storage: str, cpus: int, max_rounds: int, seed: int) -> dict:
    from ml_platform.ray_session import ray_session
    from ml_platform.results import first_trial_start_s

    launched = psutil.Process().create_time()
    fast = variant == "fast"
    if not fast:
        _import_session()
    from bench.tuning import TRIAL_MODULES

    with ray_session(cpus, fast_start=fast, preload=TRIAL_MODULES) as ray_start_s:
        if fast:
            _import_session()
        from bench.tuning import _tuner, digits_split

        tuner = _tuner("ours", cpus, max_rounds, cpus, seed, digits_split(seed), storage)
        fit_unix = time.time()
        grid = tuner.fit()
    return {
        "variant": variant,
        "ray_start_s": round(ray_start_s, 2),
        "first_trial_start_s": first_trial_start_s(grid, fit_unix),
        "first_trial_from_launch_s": first_trial_start_s(grid, launched),
    }


FIRST_TRIAL_REPEATS = 2  # each variant, alternating: defaults, fast, defaults, fast
FIRST_TRIAL_FIGURES = ("first_trial_start_s", "first_trial_from_launch_s", "ray_start_s")


def first_trial_ab(ctx, max_rounds: int) -> dict:
    """Time to the first trial's start, a plain Ray Tune script vs `ml:tune`'s order and fast
    start (bench.first_trial), each in fresh processes (one trial per CPU) in this run."""
    s = ctx.settings
    labels = {"defaults": "ray_defaults", "fast": "fast_start"}
    runs: dict[str, list[dict]] = {label: [] for label in labels.values()}
    for i in range(1 if ctx.smoke else FIRST_TRIAL_REPEATS):
        for variant, label in labels.items():
            storage = ctx.work_dir / "ray-first" / f"{variant}-{i}"
            args = [variant, str(storage), str(s.tune_cpus), str(max_rounds), str(s.seed)]
            runs[label].append(_first_trial_process(args))
            ctx.log(f"  tuning first trial ({label}): {runs[label][-1]}")
    out = {label: _mean_figures(rs) | {"runs": rs} for label, rs in runs.items()}
    for key, figure in (("ratio", "first_trial_start_s"),
                        ("ratio_from_launch", "first_trial_from_launch_s")):  # fmt: skip
        base, fast = out["ray_defaults"][figure], out["fast_start"][figure]
        out[key] = round(base / fast, 2) if base and fast else None
    return out


def _first_trial_process(args: list[str]) -> dict:
    # set before Ray is imported: under `uv run` each worker would otherwise build a venv
    env = {**os.environ, "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "bench.first_trial", *args],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"bench.first_trial {args[0]} failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _mean_figures(runs: list[dict]) -> dict:
    out = {}
    for key in FIRST_TRIAL_FIGURES:
        values = [r[key] for r in runs if r.get(key) is not None]
        out[key] = round(sum(values) / len(values), 3) if values else None
    return out


def main(argv: list[str]) -> int:
    variant, storage, cpus, max_rounds, seed = argv
    if variant not in VARIANTS:
        print(f"variant: choose from {VARIANTS}", file=sys.stderr)
        return 2
    print(json.dumps(measure(variant, storage, int(cpus), int(max_rounds), int(seed))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
