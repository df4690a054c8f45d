"""The one place that says where data, artifacts and the tracking server are.

Every entry point (task commands, notebooks, the Spark job, the Ray job, the
predictor, CI) builds a `Settings` from the environment and an optional `.env`,
so a laptop and a cluster differ only in configuration. Nothing is read at
import time: call `get_settings()`.
"""

from __future__ import annotations

import functools
import re
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

# the data-set model lives in helper/dataset.py; re-exported for existing importers
from helper.dataset import DatasetError, DatasetSpec, load_dataset_spec  # noqa: F401
from helper.errors import PlatformError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATASET_CONFIG = REPO_ROOT / "data_platform" / "datasets" / "iris.yaml"

_URI_SCHEMES = {"", "file", "s3", "s3a"}

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


def _check_uri(value: str, field: str) -> str:
    scheme = urlparse(value).scheme
    if len(scheme) == 1:  # a Windows drive letter is a path, not a scheme
        scheme = ""
    if scheme not in _URI_SCHEMES:
        raise ValueError(f"{field}: unsupported scheme '{scheme}://' (use a path, s3:// or s3a://)")
    if scheme in {"s3", "s3a"} and not urlparse(value).netloc:
        raise ValueError(f"{field}: '{value}' names no bucket")
    return value


def _check_http(value: str, field: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in {"http", "https"} or not parsed.netloc:
        raise ValueError(f"{field}: '{value}' is not an http(s) URL")
    return value


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


class Settings(BaseSettings):
    """Platform configuration. Environment variables are `MLP_<FIELD>`; the usual
    MLflow/AWS variable names are accepted where a user would expect them."""

    model_config = SettingsConfigDict(
        env_prefix="MLP_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        # load_settings(s3_endpoint_url=...) must not be silently ignored for aliased fields
        validate_by_name=True,
        validate_by_alias=True,
    )

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

    # --- tuning ------------------------------------------------------------------
    tune_num_samples: int = Field(16, ge=1)
    tune_max_concurrent: int = Field(2, ge=1)
    tune_time_budget_s: float = Field(120.0, gt=0)
    tune_cpus: int = Field(2, ge=1)
    tune_max_rounds: int = Field(60, ge=1)
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

    @model_validator(mode="after")
    def _derive_defaults(self) -> Settings:
        """Local defaults follow the ports, bucket and data set unless set explicitly."""
        spec = self.dataset
        self.raw_uri = self.raw_uri or str(spec.resolve_raw())
        self.experiment_name = self.experiment_name or spec.default_experiment_name
        self.registered_model_name = self.registered_model_name or spec.default_model_name
        self.kserve_isvc_name = self.kserve_isvc_name or self.registered_model_name
        if not self.lake_uri:
            self.lake_uri = str(self.state_dir / "lake")
        if "s3_endpoint_url" not in self.model_fields_set:
            self.s3_endpoint_url = f"http://127.0.0.1:{self.s3_port}"
        if not self.tracking_uri:
            self.tracking_uri = f"http://127.0.0.1:{self.mlflow_port}"
        if not self.prometheus_url:
            self.prometheus_url = f"http://127.0.0.1:{self.prometheus_port}"
        if not self.artifacts_destination:
            self.artifacts_destination = f"s3://{self.s3_bucket}/mlflow"
        _check_http(self.tracking_uri, "tracking_uri")
        _check_http(self.prometheus_url, "prometheus_url")
        _check_http(self.cluster_prometheus_url, "cluster_prometheus_url")
        _ = self.store_ports  # raises when the derived ports run past 65535
        for name in ("raw_uri", "lake_uri", "artifacts_destination"):
            _check_uri(getattr(self, name), name)
        return self

    @field_validator("s3_endpoint_url")
    @classmethod
    def _endpoint(cls, v: str | None) -> str | None:
        return _check_http(v, "s3_endpoint_url") if v else None

    @field_validator("ionos_api_url")
    @classmethod
    def _ionos_api(cls, v: str) -> str:
        return _check_http(v, "ionos_api_url").rstrip("/")

    @field_validator("dataset_config")
    @classmethod
    def _dataset_exists(cls, v: Path) -> Path:
        if not Path(v).is_file():
            raise ValueError(f"dataset_config: no file at {v}")
        load_dataset_spec(v)  # DatasetError (a ValueError) names the file and the problem
        return v

    # --- derived -----------------------------------------------------------------
    def state_dir_problem(self) -> str | None:
        """Why `state_dir` cannot hold this process's files, or None when it can.

        Checked by the entry points that write there (tuning, promotion) before they start
        anything slow: in a pod the image's /app is read-only, so the default
        `<repo>/.local` fails deep inside Ray or MLflow with a traceback instead.
        """
        path = Path(self.state_dir)
        try:
            path.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
                pass
        except OSError as exc:
            return (
                f"state_dir: {path} is not writable ({exc.strerror or exc}); set MLP_STATE_DIR "
                "to a writable directory (in a pod: an emptyDir mount)"
            )
        return None

    @property
    def dataset(self) -> DatasetSpec:
        return load_dataset_spec(self.dataset_config)

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def s3_is_local(self) -> bool:
        """True when S3 is on this machine (the local store, or a user's own local server)."""
        host = urlparse(self.s3_endpoint_url or "").hostname
        return host in {"127.0.0.1", "localhost", "::1"}

    @property
    def store_ports(self) -> dict[str, int]:
        """Every port the local object store listens on, by role (S3 API first)."""
        base = self.store_port_base or self.s3_port + 1
        ports = {"s3": self.s3_port}
        ports |= {role: base + i for i, role in enumerate(STORE_PORT_ROLES)}
        if max(ports.values()) > 65535:
            raise ValueError(
                f"store_port_base: store ports {base}..{max(ports.values())} exceed 65535"
            )
        return ports

    @property
    def s3_key_file(self) -> Path:
        """The local store's key pair: generated once per state dir, mode 0600, never in git."""
        return self.state_dir / "s3" / "credentials.json"

    def s3_credentials(self) -> tuple[str, str] | None:
        """Configured keys (AWS_* / MLP_AWS_*) first; for a local endpoint without them, the
        state dir's generated key pair; None means boto3's default chain."""
        if self.aws_access_key_id and self.aws_secret_access_key:
            return (
                self.aws_access_key_id.get_secret_value(),
                self.aws_secret_access_key.get_secret_value(),
            )
        if self.s3_is_local:
            return local_key_pair(self.s3_key_file)
        return None

    def s3_client_kwargs(self) -> dict:
        """Arguments for `boto3.client("s3", **kw)`."""
        kw: dict = {"region_name": self.s3_region}
        if self.s3_endpoint_url:
            kw["endpoint_url"] = self.s3_endpoint_url
        creds = self.s3_credentials()
        if creds:
            kw["aws_access_key_id"], kw["aws_secret_access_key"] = creds
        return kw

    def s3_env(self) -> dict[str, str]:
        """Environment for child processes (MLflow server, predictors, Spark) that talk to S3."""
        env = {"AWS_REGION": self.s3_region, "AWS_DEFAULT_REGION": self.s3_region}
        if self.s3_endpoint_url:
            env |= {
                "AWS_ENDPOINT_URL": self.s3_endpoint_url,
                "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint_url,
                "S3_ENDPOINT": urlparse(self.s3_endpoint_url).netloc,
                "S3_USE_HTTPS": "1" if self.s3_endpoint_url.startswith("https") else "0",
            }
        creds = self.s3_credentials()
        if creds:
            env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = creds
        return env


def local_key_pair(path: Path) -> tuple[str, str]:
    """Read the key pair at `path`, creating it first if there is none.

    Created with O_EXCL and mode 0600, so concurrent first users (a test session's
    subprocesses) agree on one pair, and no other user of the machine can read it."""
    import json
    import os
    import secrets

    path = Path(path)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        pair = {
            "access_key_id": "MLP" + secrets.token_hex(8).upper(),
            "secret_access_key": secrets.token_urlsafe(30),
        }
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(pair, fh)
        try:
            os.link(tmp, path)  # atomic, and fails if another process won the race
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    data = json.loads(path.read_text(encoding="utf-8"))
    return data["access_key_id"], data["secret_access_key"]


class SettingsError(PlatformError, ValueError):
    """Raised instead of a pydantic traceback: one line per bad field, non-zero exit."""


def load_settings(**overrides) -> Settings:
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"invalid setting {where}: {msg}" if where else f"invalid setting: {msg}")
        raise SettingsError("\n".join(lines)) from None


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
