"""The settings' fields, grouped by the stage that reads them; `helper.settings` builds on them.

Apart from `helper/settings.py` so that the list of what can be configured (defaults, bounds,
environment names, one comment per field) reads as one table, without the derivation and
S3 logic around it. Each group is a class; they form one chain of subclasses so that the
fields keep the order in which validation reports them (where things live first). The
classes are not meant to be instantiated: `helper.settings.Settings` is the one settings type.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATASET_CONFIG = REPO_ROOT / "data_platform" / "datasets" / "iris.yaml"

# The local object store (SeaweedFS, helper/object_store.py) listens on s3_port for the S3
# API and on one port per internal role, all on 127.0.0.1; gRPC ports are explicit because
# SeaweedFS's default (http port + 10000) may be taken or out of range.
STORE_PORT_ROLES = (
    "master", "volume", "filer", "master_grpc", "volume_grpc", "filer_grpc", "s3_grpc",
)  # fmt: skip


class Metric(StrEnum):
    """Metrics a trial reports; the registry ranks runs by one of them."""

    accuracy = "accuracy"
    recall_macro = "recall_macro"
    log_loss = "log_loss"

    @property
    def mode(self) -> Literal["max", "min"]:
        return "min" if self is Metric.log_loss else "max"


_SPARK_MEMORY = re.compile(r"^([1-9][0-9]*)(Mi|Gi)$")


def spark_memory_mib(value: str) -> int:
    """'1Gi' -> 1024, '512Mi' -> 512 (Kubernetes quantity spelling, binary units only)."""
    match = _SPARK_MEMORY.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a memory size like 512Mi or 2Gi")
    return int(match[1]) * (1024 if match[2] == "Gi" else 1)


def check_spark_memory(value: str, name: str) -> str:
    """Validate a Spark memory setting; the driver needs at least 1Gi."""
    try:
        mib = spark_memory_mib(value)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    if mib < (1024 if name == "spark_driver_memory" else 512):
        floor = "1Gi" if name == "spark_driver_memory" else "512Mi"
        raise ValueError(f"{name}: {value} is below the minimum {floor}")
    return value


class _Locations(BaseSettings):
    """Where data, the object store and the best-run file live."""

    # --- where things live -------------------------------------------------------
    state_dir: Path = Field(REPO_ROOT / ".local", description="pid files, logs, local DBs")
    dataset_config: Path = Field(DEFAULT_DATASET_CONFIG, description="data set description")
    raw_uri: str = Field(
        "", description="raw CSV: a path or s3a:// URI; default: the data set's raw_file"
    )
    lake_uri: str = Field(
        "", description="lake root: a path or s3a:// URI; default <state_dir>/lake"
    )
    s3_bucket: str = Field("ml-platform", description="bucket for raw data, lake and artifacts")
    # (local store) a field, not a constant, so that a private stack (tests, the bench) can
    # keep its own: `local:reset` removes this file when it names a model of the wiped store
    best_run_file: Path = Field(
        REPO_ROOT / "ml_platform" / "best_model_artifacts" / ".env.best_run",
        description="the registered model to deploy (the committed GitOps trigger)",
    )
    s3_endpoint_url: str | None = Field(
        None,
        validation_alias=AliasChoices(
            "MLP_S3_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL"
        ),
        description="S3 API endpoint; default: the local server on s3_port; empty for AWS",
    )
    s3_region: str = Field(
        "us-east-1", validation_alias=AliasChoices("MLP_S3_REGION", "AWS_REGION")
    )
    aws_access_key_id: SecretStr | None = Field(
        None, validation_alias=AliasChoices("MLP_AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID")
    )
    aws_secret_access_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("MLP_AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY")
    )


class _Tracking(_Locations):
    """The MLflow server, its store ports and the registry's names and gate."""

    # --- tracking and registry ---------------------------------------------------
    tracking_uri: str = Field(
        "",
        validation_alias=AliasChoices("MLP_TRACKING_URI", "MLFLOW_TRACKING_URI"),
    )
    mlflow_port: int = Field(5000, ge=1, le=65535)
    s3_port: int = Field(9000, ge=1, le=65535, description="S3 API of the local object store")
    store_port_base: int | None = Field(
        None,
        ge=1,
        le=65535 - len(STORE_PORT_ROLES) + 1,
        description="first of the local store's internal ports (master, volume, filer and "
        "their gRPC ports, in STORE_PORT_ROLES order); default s3_port + 1",
    )
    artifacts_destination: str = Field(
        "", description="where the MLflow server stores artifacts; default s3://<bucket>/mlflow"
    )
    # default (empty): from the data set (helper/dataset.py), e.g. iris-xgboost / iris-classifier
    experiment_name: str = ""
    registered_model_name: str = Field("", pattern=r"^([a-z0-9][a-z0-9-]*)?$")
    metric: Metric = Metric.accuracy
    # Iris's held-out split is 30 rows, so one row moves accuracy by 3.3 points; tree models
    # reach 0.87-0.93 on it depending on the split. The gate is "not broken", not a leaderboard.
    min_metric: float = Field(0.85, description="a best run below this is not registered")


class _Etl(_Tracking):
    """The ETL's rules and Spark's size."""

    # --- ETL ---------------------------------------------------------------------
    seed: int = 42
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    max_reject_ratio: float = Field(0.2, ge=0.0, le=1.0)

    # --- Spark sizing (local session and the cluster SparkApplication) -------------
    spark_driver_memory: str = Field("1Gi", description="driver JVM heap, e.g. 1Gi, 2048Mi")
    spark_executor_memory: str = Field("1Gi", description="executor JVM heap (cluster)")
    spark_executor_cores: int = Field(1, ge=1, le=64)
    spark_executor_instances: int = Field(1, ge=1, le=1000)
    spark_shuffle_partitions: int = Field(2, ge=1, le=100_000)

    @field_validator("spark_driver_memory", "spark_executor_memory")
    @classmethod
    def _spark_memory(cls, v: str, info) -> str:
        return check_spark_memory(v, info.field_name)


class _Tuning(_Etl):
    """Ray Tune's budget and the MLflow client's fault handling."""

    # --- tuning ------------------------------------------------------------------
    tune_num_samples: int = Field(16, ge=1)
    tune_max_concurrent: int = Field(2, ge=1)
    tune_time_budget_s: float = Field(120.0, gt=0)
    tune_cpus: int = Field(2, ge=1)
    tune_max_rounds: int = Field(60, ge=1)
    # a local Ray's trial actors use its prestarted, preloaded workers (ml_platform.ray_session);
    # false keeps Ray Tune's defaults (for comparison, or if a Ray upgrade misbehaves)
    tune_fast_start: bool = Field(True, description="trial actors on preloaded idle workers")
    # (added by the tuning engineer) set inside a RayJob/Ray cluster: connect instead of
    # starting a private local Ray; KubeRay exports RAY_ADDRESS to the job's entrypoint
    ray_address: str | None = Field(
        None, validation_alias=AliasChoices("MLP_RAY_ADDRESS", "RAY_ADDRESS")
    )

    # --- tracking: client fault handling (ml_platform/tracking.py) -------------------
    # MLflow's own defaults (7 retries, backoff factor 2, 120 s timeout) make a dead server
    # look like a hang for minutes; tune/register export these before any MLflow call.
    tracking_max_retries: int = Field(2, ge=0, le=10, description="HTTP retries per MLflow call")
    # integers: MLflow parses MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR and _TIMEOUT with int()
    tracking_backoff_factor: int = Field(
        1, ge=0, le=10, description="MLflow retry backoff factor (seconds, exponential)"
    )
    tracking_timeout_s: int = Field(
        10, ge=1, le=600, description="timeout of one MLflow HTTP request, seconds"
    )


class _Serving(_Tuning):
    """Predictors, proxy, Prometheus and the promotion."""

    # --- serving -----------------------------------------------------------------
    serve_host: str = "127.0.0.1"
    serve_port: int = Field(8080, ge=1, le=65535)
    max_batch_rows: int = Field(100_000, ge=1)
    auth_token: SecretStr | None = Field(None, description="bearer token the endpoint requires")
    # --- serving: hardening (inference_service/auth.py) ----------------------------
    max_body_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="larger request bodies get 413 (before parsing)"
    )
    # --- serving: local canary (inference_service/serving_stack.py) --------------
    predictor_ports: tuple[int, int] = Field(
        (8091, 8092), description="the two local predictor slots behind the proxy on serve_port"
    )

    # --- progressive delivery (issue 13): proxy, metrics, analysis --------------------
    # HAProxy (inference_service/proxy.py) splits serve_port between the predictor slots;
    # its Prometheus exporter and stats page listen on proxy_stats_port. A local Prometheus
    # (inference_service/prometheus_local.py) scrapes both; the promotion's analysis
    # (inference_service/promotion/analysis.yaml) reads only Prometheus.
    proxy_stats_port: int = Field(8404, ge=1, le=65535, description="HAProxy exporter/stats")
    prometheus_port: int = Field(9090, ge=1, le=65535, description="local Prometheus")
    prometheus_url: str = Field(
        "", description="Prometheus the local analysis queries; default: the local one"
    )
    cluster_prometheus_url: str = Field(
        "http://kube-prometheus-stack-prometheus.monitoring.svc:9090",
        description="Prometheus the kserve target's analysis queries (platform/ installs it)",
    )
    prometheus_scrape_interval_s: float = Field(
        1.0, ge=0.2, le=60.0, description="local scrape interval; analysis steps last seconds"
    )
    prometheus_retention: str = Field(
        "6h", pattern=r"^\d+[smhdwy]$", description="local TSDB retention (storage stays small)"
    )
    analysis_spec: Path = Field(
        REPO_ROOT / "inference_service" / "promotion" / "analysis.yaml",
        description="canary steps and metric checks (YAML, inference_service/promotion/spec.py)",
    )

    # --- promotion (inference_service/promotion) -----------------------------------
    # Gates use `metric`/`min_metric` above; canary steps and checks live in the analysis
    # spec (`analysis_spec` below), not here.
    promote_max_regression: float = Field(
        0.02, ge=0.0, description="held-out metric may be worse than the champion's by this"
    )
    promote_ready_timeout_s: float = Field(120.0, gt=0.0, description="bounded canary wait")
    promote_smoke_budget_ms: float = Field(
        2000.0, gt=0.0, description="first answer of the smoke-loaded model within this"
    )
    kserve_namespace: str = Field("ml-platform", description="namespace of the InferenceService")
    # default (empty): the registered model name, which names the InferenceService on the
    # cluster (platform/dataset, helper/cluster_dataset.py) and which KServe serves it under
    kserve_isvc_name: str = Field("", description="InferenceService to promote")


class SettingsFields(_Serving):
    """Every field; `helper.settings.Settings` adds config, derivations and S3 helpers."""

    # --- cluster validation (helper/validate.py) -----------------------------------
    crd_schema_dir: Path | None = Field(
        None,
        validation_alias=AliasChoices("MLP_CRD_SCHEMA_DIR", "CRD_SCHEMA_DIR"),
        description="JSON schemas of custom resources, <group>/<kind>_<version>.json",
    )
    k8s_version: str = Field(
        "1.32",
        pattern=r"^\d+\.\d+$",
        description="Kubernetes minor the core kinds are checked against",
    )

    # --- cluster access (ops/get_k8s_config.py, terraform/Taskfile.yml) ----------
    ionos_token: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("MLP_IONOS_TOKEN", "IONOS_TOKEN"),
        description="IONOS Cloud API bearer token; only ever from the environment",
    )
    ionos_api_url: str = Field(
        "https://api.ionos.com/cloudapi/v6",
        validation_alias=AliasChoices("MLP_IONOS_API_URL", "IONOS_API_URL"),
        description="IONOS Cloud API base URL (a local fake in tests)",
    )
