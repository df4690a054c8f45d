"""Spark sizing settings (MLP_SPARK_*) and their use by the local session; no Spark."""

from __future__ import annotations

import pytest

from data_platform.session import sizing_conf
from helper.settings import SettingsError, load_settings, spark_memory_mib


@pytest.fixture(autouse=True)
def _clean_spark_env(monkeypatch):
    for key in [
        "MLP_SPARK_DRIVER_MEMORY",
        "MLP_SPARK_EXECUTOR_MEMORY",
        "MLP_SPARK_EXECUTOR_CORES",
        "MLP_SPARK_EXECUTOR_INSTANCES",
        "MLP_SPARK_SHUFFLE_PARTITIONS",
    ]:
        monkeypatch.delenv(key, raising=False)


def test_defaults_fit_the_two_core_machine():
    s = load_settings()
    assert (s.spark_driver_memory, s.spark_executor_memory) == ("1Gi", "1Gi")
    assert s.spark_shuffle_partitions == 2
    assert sizing_conf(s) == {"spark.driver.memory": "1024m", "spark.sql.shuffle.partitions": "2"}


def test_environment_sets_the_sizing(monkeypatch):
    monkeypatch.setenv("MLP_SPARK_DRIVER_MEMORY", "3Gi")
    monkeypatch.setenv("MLP_SPARK_EXECUTOR_MEMORY", "512Mi")
    monkeypatch.setenv("MLP_SPARK_SHUFFLE_PARTITIONS", "8")
    monkeypatch.setenv("MLP_SPARK_EXECUTOR_INSTANCES", "4")
    s = load_settings()
    assert s.spark_executor_memory == "512Mi" and s.spark_executor_instances == 4
    assert sizing_conf(s) == {"spark.driver.memory": "3072m", "spark.sql.shuffle.partitions": "8"}


@pytest.mark.parametrize(
    ("value", "mib"), [("1Gi", 1024), ("512Mi", 512), ("2048Mi", 2048), ("16Gi", 16384)]
)
def test_memory_sizes_in_kubernetes_spelling(value, mib):
    assert spark_memory_mib(value) == mib


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"MLP_SPARK_DRIVER_MEMORY": "1g"}, "spark_driver_memory: '1g' is not a memory size"),
        (
            {"MLP_SPARK_DRIVER_MEMORY": "512Mi"},
            "spark_driver_memory: 512Mi is below the minimum 1Gi",
        ),
        ({"MLP_SPARK_EXECUTOR_MEMORY": "1.5Gi"}, "spark_executor_memory: '1.5Gi' is not"),
        ({"MLP_SPARK_EXECUTOR_MEMORY": "256Mi"}, "below the minimum 512Mi"),
        ({"MLP_SPARK_EXECUTOR_CORES": "0"}, "spark_executor_cores"),
        ({"MLP_SPARK_SHUFFLE_PARTITIONS": "0"}, "spark_shuffle_partitions"),
    ],
)
def test_bad_sizing_fails_with_a_clear_line(monkeypatch, env, needle):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert needle in str(info.value)
    assert "Traceback" not in str(info.value)
