"""The one place that says where data, artifacts and the tracking server are.

Every entry point (task commands, notebooks, the Spark job, the Ray job, the
predictor, CI) builds a `Settings` from the environment and an optional `.env`,
so a laptop and a cluster differ only in configuration. Nothing is read at
import time: call `get_settings()`.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from pydantic import ValidationError, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

# the data-set model lives in helper/dataset.py; re-exported for existing importers
from helper.dataset import DatasetError, DatasetSpec, load_dataset_spec  # noqa: F401
from helper.errors import PlatformError

# the fields (and the constants and checks they use) live in helper/settings_fields.py;
# re-exported for existing importers
from helper.settings_fields import (  # noqa: F401
    DEFAULT_DATASET_CONFIG,
    REPO_ROOT,
    STORE_PORT_ROLES,
    Metric,
    SettingsFields,
    check_spark_memory,
    spark_memory_mib,
)

_URI_SCHEMES = {"", "file", "s3", "s3a"}


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


class Settings(SettingsFields):
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
