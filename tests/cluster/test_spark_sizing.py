"""The SparkApplication's sizing comes from each overlay's spark.env, which the settings
validators accept (the same MLP_SPARK_* names the local session reads)."""

from __future__ import annotations

import pytest

from helper import validate
from helper.settings import REPO_ROOT, load_settings

pytestmark = pytest.mark.cluster

OVERLAYS = sorted((REPO_ROOT / "data_platform" / "k8s" / "overlays").iterdir())


def _env(path) -> dict[str, str]:
    lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
    return dict(ln.split("=", 1) for ln in lines)


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_rendered_sizing_matches_spark_env_and_passes_the_validators(overlay, monkeypatch):
    env = _env(overlay / "spark.env")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()  # raises SettingsError on a bad size
    docs = validate.render(overlay)
    assert not [
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "spark-sizing"
    ]
    (app,) = [d for d in docs if d["kind"] == "SparkApplication"]
    spec = app["spec"]
    assert spec["driver"]["config"]["resources"]["memory"]["limit"] == settings.spark_driver_memory
    assert (
        spec["executor"]["config"]["resources"]["memory"]["limit"] == settings.spark_executor_memory
    )
    assert spec["sparkConf"]["spark.sql.shuffle.partitions"] == str(
        settings.spark_shuffle_partitions
    )
