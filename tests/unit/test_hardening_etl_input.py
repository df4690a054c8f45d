"""ETL bad input not covered by test_etl_job.py: an EMPTY raw file, a BOM-only file, and a
file whose every line is rejected while a previous version exists. Each must refuse the
run and leave the previously published version current and the lake untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_platform import etl_job, lake, make_raw
from helper.settings import load_settings

# Whole ETL runs with Parquet writes on the shared local Spark: seconds each.
pytestmark = pytest.mark.slow


@pytest.fixture
def published(spark, tmp_path):
    """A lake with one good version; returns (lake_uri, manifest, files on disk)."""
    raw = make_raw.write_lines(tmp_path / "raw" / "iris.data", make_raw.iris_lines())
    settings = load_settings(raw_uri=str(raw), lake_uri=str(tmp_path / "lake"))
    etl_job.run_etl(spark, settings)
    manifest = lake.latest_manifest(settings.lake_uri, "iris")
    return settings.lake_uri, manifest, _files(tmp_path / "lake")


def _files(root: Path) -> list[Path]:
    return sorted(root.rglob("*"))


def _run_on(spark, tmp_path, lake_uri: str, content: bytes, **overrides):
    raw = tmp_path / "bad" / "iris.data"
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_bytes(content)
    settings = load_settings(raw_uri=str(raw), lake_uri=lake_uri, **overrides)
    with pytest.raises(etl_job.EtlError) as err:
        etl_job.run_etl(spark, settings)
    return err.value


@pytest.mark.parametrize(
    "content",
    [b"", "\ufeff".encode(), b"\r\n\r\n", b"\n"],
    ids=["empty", "bom-only", "crlf-blank-lines", "one-newline"],
)
def test_a_file_without_rows_refuses_and_keeps_the_previous_version(
    spark, tmp_path, published, content
):
    lake_uri, before, files_before = published
    error = _run_on(spark, tmp_path, lake_uri, content, max_reject_ratio=1.0)
    assert "no good rows among" in str(error), str(error)
    assert error.summary["status"] == "failed"
    assert lake.latest_manifest(lake_uri, "iris") == before
    assert _files(tmp_path / "lake") == files_before


def test_all_rejects_refuse_even_at_ratio_one_and_keep_the_previous_version(
    spark, tmp_path, published
):
    lake_uri, before, files_before = published
    lines = ["5.1,abc,1.4,0.2,Iris-setosa", "1,2,3,4,Iris-nope", "1,2,3", ""]
    content = ("\r\n".join(lines) + "\r\n").encode()
    error = _run_on(spark, tmp_path, lake_uri, content, max_reject_ratio=1.0)
    assert "no good rows" in str(error)
    assert error.summary["rows_in"] == 4
    assert error.summary["rejects_by_reason"] == {
        "non_numeric": 1,
        "unknown_class": 1,
        "wrong_column_count": 1,
        "blank_line": 1,
    }
    assert lake.latest_manifest(lake_uri, "iris") == before
    assert _files(tmp_path / "lake") == files_before
    assert len(lake.read_split(before, "train")) == before["train_rows"]
