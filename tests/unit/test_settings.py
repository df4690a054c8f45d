"""The settings object: defaults that follow each other, env names users expect, clear errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from helper.settings import Metric, Settings, SettingsError, load_dataset_spec, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    """Settings come from the environment: start each test from none of ours (a session
    fixture such as `local_stack` may have set MLP_* for the whole run)."""
    import os

    ours = ("MLFLOW_TRACKING_URI", "MLFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")  # fmt: skip
    for key in list(os.environ):
        if key.startswith("MLP_") or key in ours:
            monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env from the developer's checkout


def test_local_defaults_follow_ports_bucket_and_state_dir(tmp_path):
    s = load_settings(s3_port=9123, mlflow_port=5123, s3_bucket="other", state_dir=tmp_path)
    assert s.lake_uri == str(tmp_path / "lake")
    assert s.s3_endpoint_url == "http://127.0.0.1:9123"
    assert s.tracking_uri == "http://127.0.0.1:5123"
    assert s.artifacts_destination == "s3://other/mlflow"


def test_users_mlflow_and_aws_variables_are_honoured(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.mlops.svc:5000")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://s3.eu-central-2.ionoscloud.com")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "id-from-env")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-from-env")
    s = Settings()
    assert s.tracking_uri == "http://mlflow.mlops.svc:5000"
    assert not s.s3_is_local
    kw = s.s3_client_kwargs()
    assert kw["endpoint_url"] == "https://s3.eu-central-2.ionoscloud.com"
    assert kw["aws_access_key_id"] == "id-from-env"
    assert "secret-from-env" not in repr(s)


def test_empty_endpoint_means_aws_and_default_credential_chain(monkeypatch):
    monkeypatch.setenv("MLP_S3_ENDPOINT_URL", "")
    s = Settings()
    assert s.s3_endpoint_url is None
    assert s.s3_client_kwargs() == {"region_name": s.s3_region}


def test_local_s3_gets_a_key_pair_generated_once_per_state_dir(tmp_path):
    import os
    import stat

    s = load_settings(state_dir=tmp_path / "a")
    assert s.s3_is_local
    first = s.s3_credentials()
    assert first and all(len(part) >= 16 for part in first)
    assert stat.S_IMODE(os.stat(s.s3_key_file).st_mode) == 0o600
    assert load_settings(state_dir=tmp_path / "a").s3_credentials() == first  # read, not new
    env = s.s3_env()
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == first
    other = load_settings(state_dir=tmp_path / "b").s3_credentials()
    assert other != first  # per state dir, never a shared placeholder
    assert first[1] not in repr(s)


def test_environment_keys_win_over_the_generated_pair(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "id-from-env")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-from-env")
    s = load_settings(state_dir=tmp_path)
    assert s.s3_credentials() == ("id-from-env", "secret-from-env")
    assert not s.s3_key_file.exists()


def test_store_ports_follow_s3_port_or_the_base(tmp_path):
    s = load_settings(s3_port=9100, state_dir=tmp_path)
    assert s.store_ports["s3"] == 9100
    assert sorted(s.store_ports.values()) == list(range(9100, 9108))
    moved = load_settings(s3_port=9100, store_port_base=9500, state_dir=tmp_path)
    assert sorted(moved.store_ports.values())[1:] == list(range(9500, 9507))
    with pytest.raises(SettingsError, match="store_port_base"):
        load_settings(s3_port=65530, state_dir=tmp_path)


def test_dotenv_file_is_read(tmp_path):
    (tmp_path / ".env").write_text("MLP_EXPERIMENT_NAME=from-dotenv\nMLP_TUNE_NUM_SAMPLES=3\n")
    s = Settings()
    assert (s.experiment_name, s.tune_num_samples) == ("from-dotenv", 3)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"MLP_LAKE_URI": "ftp://host/lake"}, "lake_uri: unsupported scheme"),
        ({"MLP_RAW_URI": "s3a:///no-bucket"}, "raw_uri"),
        ({"MLP_TUNE_NUM_SAMPLES": "-1"}, "tune_num_samples"),
        ({"MLP_METRIC": "f1"}, "metric"),
        ({"MLFLOW_TRACKING_URI": "localhost:5000"}, "tracking_uri"),
        ({"MLP_DATASET_CONFIG": "/nope.yaml"}, "dataset_config"),
    ],
)
def test_invalid_settings_fail_with_one_line_per_field(monkeypatch, env, needle):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert needle in message
    assert "Traceback" not in message and "pydantic" not in message


def test_cli_reports_bad_setting_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "ops.local_stack", "status"],
        env={"PATH": "/usr/bin:/bin", "MLP_TUNE_NUM_SAMPLES": "-5", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    assert "invalid setting tune_num_samples" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_metric_modes():
    assert Metric.accuracy.mode == "max"
    assert Metric.recall_macro.mode == "max"
    assert Metric.log_loss.mode == "min"


def test_another_dataset_is_only_config(tmp_path):
    cfg = tmp_path / "wine.yaml"
    cfg.write_text(
        "name: wine\nraw_file: wine.csv\nheader: true\n"
        "features: [alcohol, ash]\nlabel: cultivar\nclasses: [a, b, c]\n"
    )
    s = load_settings(dataset_config=cfg)
    assert s.dataset.features == ["alcohol", "ash"]
    assert s.dataset.label_index == {"a": 0, "b": 1, "c": 2}


def test_dataset_spec_rejects_duplicate_columns(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("name: bad\nraw_file: x\nfeatures: [a, a]\nlabel: y\nclasses: [p, q]\n")
    with pytest.raises(ValueError, match="duplicate feature names: a"):
        load_dataset_spec(cfg)
