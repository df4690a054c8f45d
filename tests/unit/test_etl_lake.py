"""lake readers (no Spark): manifest-last publication, newest version, typed splits."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs
import pytest

from data_platform import lake
from helper.settings import load_settings

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
CLASSES = ["Iris-setosa", "Iris-versicolor", "Iris-virginica"]


def publish(root: Path, when: datetime, *, manifest: bool = True, rows: int = 4) -> dict:
    """Lay out one version by hand, as the job would; the manifest is optional."""
    date, version = lake.new_version(when)
    base = lake.version_uri(str(root), "iris", date, version)
    frame = pd.DataFrame({f: [float(i) for i in range(rows)] for f in FEATURES})
    frame["label"] = pd.Series([i % 3 for i in range(rows)], dtype="int32")
    for split in ("train", "test"):
        Path(base, split).mkdir(parents=True)
        frame.to_parquet(Path(base, split, "part-0.parquet"))
    Path(base, "rejects").mkdir()
    pd.DataFrame({"raw_line": ["x"], "reason": ["wrong_column_count"]}).to_parquet(
        Path(base, "rejects", "part-0.parquet")
    )
    doc = lake.build_manifest(
        dataset="iris",
        version=version,
        raw_uri="/raw/iris.data",
        features=FEATURES,
        label="species",
        classes=CLASSES,
        seed=42,
        test_fraction=0.2,
        counts={None: 2 * rows, "wrong_column_count": 1},
        train_rows=rows,
        test_rows=rows,
        base_uri=base,
        created_at=when,
    )
    if manifest:
        Path(base, lake.MANIFEST).write_text(json.dumps(doc))
    return doc


T0 = datetime(2026, 11, 20, 23, 59, tzinfo=UTC)


def test_latest_manifest_is_the_newest_published_version(tmp_path):
    publish(tmp_path, T0)
    newest = publish(tmp_path, T0 + timedelta(minutes=2))  # next day: date dir changes
    publish(tmp_path, T0 + timedelta(seconds=30))
    assert lake.latest_manifest(str(tmp_path), "iris") == newest


def test_a_version_without_manifest_does_not_exist_for_readers(tmp_path):
    good = publish(tmp_path, T0)
    publish(tmp_path, T0 + timedelta(hours=1), manifest=False)  # crashed later run
    assert lake.latest_manifest(str(tmp_path), "iris") == good
    assert len(lake.list_versions(str(tmp_path), "iris")) == 1


def test_an_empty_lake_raises_a_clear_error(tmp_path):
    publish(tmp_path, T0, manifest=False)
    with pytest.raises(lake.LakeError, match="no published ETL output.*task data:etl"):
        lake.latest_manifest(str(tmp_path), "iris")
    with pytest.raises(lake.LakeError, match="no published"):
        lake.latest_manifest(str(tmp_path / "missing"), "iris")


def test_a_manifest_missing_contract_keys_is_refused(tmp_path):
    doc = publish(tmp_path, T0)
    path = Path(doc["paths"]["train"]).parent / lake.MANIFEST
    path.write_text(json.dumps({k: v for k, v in doc.items() if k != "classes"}))
    with pytest.raises(lake.LakeError, match="classes"):
        lake.latest_manifest(str(tmp_path), "iris")


def test_manifest_has_the_contract_keys_and_consistent_counts(tmp_path):
    doc = publish(tmp_path, T0, rows=5)
    assert set(lake.MANIFEST_KEYS) <= set(doc)
    assert doc["rows_in"] == 11 and doc["rows_out"] == 10
    assert doc["rejects"] == {"total": 1, "by_reason": {"wrong_column_count": 1}}
    assert doc["version"].startswith("20261120T235900")


def test_read_split_returns_features_as_float64_and_label_as_int32(tmp_path):
    doc = publish(tmp_path, T0, rows=6)
    train = lake.read_split(doc, "train")
    assert list(train.columns) == [*FEATURES, "label"]
    assert str(train["label"].dtype) == "int32"
    assert all(str(train[f].dtype) == "float64" for f in FEATURES)
    assert len(train) == 6
    assert list(lake.read_split(doc, "rejects")["reason"]) == ["wrong_column_count"]


def test_read_split_names_a_bad_split_or_missing_path(tmp_path):
    doc = publish(tmp_path, T0)
    with pytest.raises(ValueError, match="^split:"):
        lake.read_split(doc, "validation")
    with pytest.raises(lake.LakeError, match=r"paths\.test"):
        lake.read_split({**doc, "paths": {}}, "test")


def test_versions_sort_by_start_time():
    earlier = lake.new_version(T0)
    later = lake.new_version(T0 + timedelta(microseconds=1))
    assert earlier[0] == "20261120"
    assert earlier[1] < later[1]


def test_s3a_uris_map_to_the_s3_filesystem_with_the_settings_endpoint():
    settings = load_settings(
        s3_endpoint_url="http://127.0.0.1:1", aws_access_key_id="k", aws_secret_access_key="s"
    )
    fs, path = lake.filesystem("s3a://bucket/lake/iris/", settings)
    assert isinstance(fs, pafs.S3FileSystem)
    assert path == "bucket/lake/iris"
    assert fs.region == settings.s3_region


def test_local_and_file_uris_map_to_the_local_filesystem(tmp_path):
    for uri in (str(tmp_path), f"file://{tmp_path}"):
        fs, path = lake.filesystem(uri)
        assert isinstance(fs, pafs.LocalFileSystem)
        assert path == str(tmp_path)
    with pytest.raises(lake.LakeError, match="unsupported scheme"):
        lake.filesystem("gs://bucket/x")


def test_join_keeps_the_scheme():
    assert lake.join("s3a://b/lake/", "iris", "/20261120") == "s3a://b/lake/iris/20261120"
