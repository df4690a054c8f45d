"""The locked environment as `./task` installs it: bytecode for the heavy packages.

Under PYTHONDONTWRITEBYTECODE=1 no process writes .pyc files, so without bytecode compiled at
install every pipeline stage, Ray worker and predictor compiles these packages from source
on each start (`import mlflow.cli` 9.1 s instead of 3.8 s on the 2-core machine)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

HEAVY = ("mlflow", "ray", "xgboost", "sklearn", "pandas", "pyarrow", "pyspark", "kserve")


@pytest.mark.parametrize("package", HEAVY)
def test_heavy_packages_ship_bytecode(package):
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.origin, f"{package} is not installed"
    sources = [Path(spec.origin), *sorted(Path(spec.origin).parent.glob("*.py"))[:20]]
    missing = [s.name for s in sources if not Path(importlib.util.cache_from_source(s)).is_file()]
    assert not missing, (
        f"{package}: no bytecode for {missing[:5]}; sync the environment with `./task` "
        "(uv sync --frozen --compile-bytecode)"
    )
