"""S3 paths against the local object store (the session's `local_stack`): upload
(idempotent) and lake readers."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest

from data_platform import upload
from helper.processes import free_port
from helper.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def s3_settings(local_stack, tmp_path_factory) -> Iterator[Settings]:
    """The session's store, with buckets of this module's own."""
    yield local_stack.model_copy(
        update={
            "s3_bucket": "etl-upload-test",
            "raw_uri": str(tmp_path_factory.mktemp("raw") / "iris.data"),
        }
    )


def test_upload_is_idempotent_and_follows_content(s3_settings, tmp_path):
    client = boto3.client("s3", **s3_settings.s3_client_kwargs())
    if s3_settings.s3_bucket not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        client.create_bucket(Bucket=s3_settings.s3_bucket)
    source = tmp_path / "iris.data"
    source.write_text("5.1,3.5,1.4,0.2,Iris-setosa\n")

    first = upload.upload_raw(s3_settings, source)
    assert first.uri == f"s3://{s3_settings.s3_bucket}/raw/iris/iris.data"
    assert first.uploaded
    stamp = client.head_object(Bucket=s3_settings.s3_bucket, Key="raw/iris/iris.data")

    again = upload.upload_raw(s3_settings, source)
    assert not again.uploaded
    assert again.sha256 == first.sha256
    same = client.head_object(Bucket=s3_settings.s3_bucket, Key="raw/iris/iris.data")
    assert same["LastModified"] == stamp["LastModified"]

    source.write_text("4.9,3.0,1.4,0.2,Iris-setosa\n")
    changed = upload.upload_raw(s3_settings, source)
    assert changed.uploaded
    body = client.get_object(Bucket=s3_settings.s3_bucket, Key="raw/iris/iris.data")["Body"]
    assert body.read() == source.read_bytes()


def test_a_missing_bucket_is_named_in_the_error(s3_settings, tmp_path):
    source = tmp_path / "iris.data"
    source.write_text("5.1,3.5,1.4,0.2,Iris-setosa\n")  # a valid row: the bucket is what fails
    other = s3_settings.model_copy(update={"s3_bucket": "no-such-bucket"})
    with pytest.raises(RuntimeError, match="s3_bucket: bucket 'no-such-bucket' does not exist"):
        upload.upload_raw(other, source)


def test_a_missing_source_file_is_named(s3_settings, tmp_path):
    with pytest.raises(FileNotFoundError, match="raw_uri: no file at"):
        upload.upload_raw(s3_settings, tmp_path / "absent.data")


def test_check_tells_a_live_endpoint_from_a_dead_one(s3_settings):
    assert upload.endpoint_reachable(s3_settings)
    dead = s3_settings.model_copy(update={"s3_endpoint_url": f"http://127.0.0.1:{free_port()}"})
    assert not upload.endpoint_reachable(dead, timeout_s=1)


def test_lake_readers_work_on_s3_and_s3a_uris(s3_settings, tmp_path):
    import pandas as pd

    from data_platform import lake

    client = boto3.client("s3", **s3_settings.s3_client_kwargs())
    bucket = "etl-lake-test"
    client.create_bucket(Bucket=bucket)
    features = s3_settings.dataset.features
    frame = pd.DataFrame({f: [1.0, 2.0] for f in features})
    frame["label"] = pd.Series([0, 2], dtype="int32")
    frame.to_parquet(tmp_path / "part-0.parquet")
    date, version = lake.new_version()
    base = f"s3a://{bucket}/lake/iris/{date}/{version}"
    manifest = lake.build_manifest(
        dataset="iris",
        version=version,
        raw_uri=f"s3a://{bucket}/raw/iris/iris.data",
        features=features,
        label="species",
        classes=s3_settings.dataset.classes,
        seed=1,
        test_fraction=0.5,
        counts={None: 4},
        train_rows=2,
        test_rows=2,
        base_uri=base,
    )
    prefix = f"lake/iris/{date}/{version}"
    for split in ("train", "test"):
        client.upload_file(str(tmp_path / "part-0.parquet"), bucket, f"{prefix}/{split}/p.parquet")
    # A later version that never got its manifest must stay invisible.
    later_date, later = lake.new_version()
    client.upload_file(
        str(tmp_path / "part-0.parquet"), bucket, f"lake/iris/{later_date}/{later}/train/p.parquet"
    )
    client.put_object(Bucket=bucket, Key=f"{prefix}/manifest.json", Body=json.dumps(manifest))

    for root in (f"s3://{bucket}/lake", f"s3a://{bucket}/lake"):
        found = lake.latest_manifest(root, "iris", s3_settings)
        assert found == manifest
        train = lake.read_split(found, "train", s3_settings)
        assert train["label"].tolist() == [0, 2]
        assert str(train["label"].dtype) == "int32"
