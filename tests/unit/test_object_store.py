"""The local store's configuration and the consistency rules, without processes."""

from __future__ import annotations

import json
import os
import stat

from helper import object_store
from helper.settings import load_settings
from ops.store_check import (
    FIX,
    Pointer,
    Problem,
    in_local_store,
    missing_files,
    parse_manifest,
    resolve_storage_uri,
)


def _settings(tmp_path, monkeypatch, **kw):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLP_S3_ENDPOINT_URL",
                "AWS_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL", "MLP_S3_PORT"):  # fmt: skip
        monkeypatch.delenv(key, raising=False)
    return load_settings(state_dir=tmp_path / "state", **kw)


def test_every_port_is_loopback_and_comes_from_the_settings(tmp_path, monkeypatch):
    s = _settings(tmp_path, monkeypatch, s3_port=9100)
    argv = object_store.argv(s)
    assert "-ip=127.0.0.1" in argv and "-ip.bind=127.0.0.1" in argv
    flags = dict(a.lstrip("-").split("=", 1) for a in argv if a.startswith("-") and "=" in a)
    ports = {k: int(v) for k, v in flags.items() if ".port" in k}
    assert sorted(v for v in ports.values() if v) == sorted(s.store_ports.values())
    # catalog servers SeaweedFS would otherwise open on fixed default ports
    assert ports["s3.port.iceberg"] == 0 and ports["s3.port.lance"] == 0
    assert flags["dir"] == str(object_store.data_dir(s))
    assert flags["master.volumePreallocate"] == "false"
    assert flags["s3.autoCreateBucket"] == "false"


def test_identity_config_holds_the_settings_keys_and_is_private(tmp_path, monkeypatch):
    s = _settings(tmp_path, monkeypatch)
    path = object_store.write_identities(s)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    [identity] = json.loads(path.read_text())["identities"]
    [cred] = identity["credentials"]
    assert (cred["accessKey"], cred["secretKey"]) == s.s3_credentials()


def test_missing_files_against_the_recorded_manifest():
    stored = {"MLmodel": 10, "model.ubj": 500}
    assert missing_files(stored, {"MLmodel": 10, "model.ubj": 500}) == []
    assert missing_files(stored, {"MLmodel": 10, "model.ubj": 500, "conda.yaml": 3}) == [
        "conda.yaml"
    ]
    assert missing_files({"MLmodel": 10, "model.ubj": 12}, {"MLmodel": 10, "model.ubj": 500}) == [
        "model.ubj (12 bytes, registered 500)"
    ]
    # without a manifest (a version not registered by us), MLmodel is the minimum
    assert missing_files(stored, None) == []
    assert missing_files({"model.ubj": 500}, None) == ["MLmodel"]
    assert parse_manifest('{"MLmodel": 10}') == {"MLmodel": 10}
    assert parse_manifest("not json") is None and parse_manifest(None) is None


def test_a_problem_names_the_version_its_aliases_the_uri_and_the_fix():
    p = Problem(Pointer("iris v3 (alias champion)", "s3://b/mlflow/1/models/m-1/artifacts"),
                ["model.ubj"])  # fmt: skip
    assert p.line() == (
        f"iris v3 (alias champion): artifacts missing at s3://b/mlflow/1/models/m-1/artifacts "
        f"(model.ubj); {FIX}"
    )
    assert "task local:reset -- --yes" in FIX


def test_only_the_local_bucket_is_checked(tmp_path, monkeypatch):
    s = _settings(tmp_path, monkeypatch)
    uri = resolve_storage_uri("mlflow-artifacts:/1/models/m-1/artifacts", s.artifacts_destination)
    assert uri == "s3://ml-platform/mlflow/1/models/m-1/artifacts"
    assert in_local_store(s, uri)
    assert not in_local_store(s, "s3://someone-elses-bucket/x")
    assert not in_local_store(s, str(tmp_path / "model"))
    aws = s.model_copy(update={"s3_endpoint_url": "https://s3.eu-central-1.amazonaws.com"})
    assert not in_local_store(aws, uri)
