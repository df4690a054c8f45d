"""etl_job.run_etl in-process (shared local Spark): publish, refuse, never clobber."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_platform import etl_job, lake, make_raw
from helper.settings import load_settings

GOOD = "5.1,3.5,1.4,0.2,Iris-setosa"

# Each test is a whole ETL run with Parquet writes: seconds each, more on a loaded machine.
pytestmark = pytest.mark.slow


def settings_for(tmp_path: Path, lines: list[str], **overrides):
    raw = make_raw.write_lines(tmp_path / "raw" / "iris.data", lines)
    return load_settings(raw_uri=str(raw), lake_uri=str(tmp_path / "lake"), **overrides)


def test_iris_run_publishes_a_readable_version(spark, tmp_path):
    settings = settings_for(tmp_path, make_raw.iris_lines())
    summary = etl_job.run_etl(spark, settings)
    manifest = lake.latest_manifest(settings.lake_uri, "iris")
    assert summary["version"] == manifest["version"]
    assert manifest["rows_in"] == manifest["rows_out"] == 150
    assert manifest["train_rows"] + manifest["test_rows"] == 150
    assert manifest["test_rows"] == 30  # stratified: round(50 * 0.2) per class
    train, test = lake.read_split(manifest, "train"), lake.read_split(manifest, "test")
    assert (len(train), len(test)) == (manifest["train_rows"], manifest["test_rows"])
    assert sorted(set(train["label"])) == [0, 1, 2]
    assert Path(summary["output"]).is_relative_to(tmp_path / "lake" / "iris")
    stages = manifest["stages_s"]
    assert set(stages) == {"plan", "read_parse", "validate", "split", "write"}
    assert all(isinstance(v, float) and v >= 0 for v in stages.values())


def test_rejects_are_written_and_counted_by_reason(spark, tmp_path):
    lines = [GOOD] * 9 + ["5.1,abc,1.4,0.2,Iris-setosa"]
    settings = settings_for(tmp_path, lines, max_reject_ratio=0.1)
    etl_job.run_etl(spark, settings)
    manifest = lake.latest_manifest(settings.lake_uri, "iris")
    assert manifest["rejects"] == {"total": 1, "by_reason": {"non_numeric": 1}}
    rejects = lake.read_split(manifest, "rejects")
    assert rejects.to_dict("records") == [
        {"raw_line": "5.1,abc,1.4,0.2,Iris-setosa", "reason": "non_numeric"}
    ]


def test_too_many_rejects_refuse_the_run_and_keep_the_previous_version(spark, tmp_path):
    settings = settings_for(tmp_path, make_raw.iris_lines())
    etl_job.run_etl(spark, settings)
    before = lake.latest_manifest(settings.lake_uri, "iris")
    dirs_before = sorted(p for p in (tmp_path / "lake").rglob("*"))

    bad = [GOOD] * 7 + ["", "x,y", "1,2,3,4,Iris-nope"]  # 30 % rejected
    refused = settings_for(tmp_path, bad, max_reject_ratio=0.2)
    with pytest.raises(etl_job.EtlError, match="reject ratio 0.3000 exceeds") as err:
        etl_job.run_etl(spark, refused)
    assert err.value.summary["rows_in"] == 10
    assert err.value.summary["rejects_by_reason"] == {
        "blank_line": 1,
        "unknown_class": 1,
        "wrong_column_count": 1,
    }
    assert lake.latest_manifest(settings.lake_uri, "iris") == before
    assert sorted(p for p in (tmp_path / "lake").rglob("*")) == dirs_before


def test_a_reject_ratio_equal_to_the_limit_passes(spark, tmp_path):
    settings = settings_for(tmp_path, [GOOD] * 8 + ["", "x"], max_reject_ratio=0.2)
    assert etl_job.run_etl(spark, settings)["rows_out"] == 8


def test_zero_good_rows_refuse_the_run_even_without_a_limit(spark, tmp_path):
    settings = settings_for(tmp_path, ["", "a,b"], max_reject_ratio=1.0)
    with pytest.raises(etl_job.EtlError, match="no good rows"):
        etl_job.run_etl(spark, settings)
    assert not (tmp_path / "lake").exists()


def test_a_missing_raw_file_is_an_error_naming_raw_uri(spark, tmp_path):
    settings = load_settings(raw_uri=str(tmp_path / "nope.data"), lake_uri=str(tmp_path / "l"))
    with pytest.raises(etl_job.EtlError, match="^raw_uri: cannot read"):
        etl_job.run_etl(spark, settings)


def test_put_text_publishes_atomically_without_leftovers(spark, tmp_path):
    target = tmp_path / "v" / "manifest.json"
    etl_job.put_text(spark, str(target), '{"a": 1}')
    assert target.read_text() == '{"a": 1}'
    assert [p.name for p in target.parent.iterdir()] == ["manifest.json"]


def test_cli_flags_override_settings():
    assert etl_job.parse_args(["--seed", "7", "--lake-uri", "/x"]) == {"seed": 7, "lake_uri": "/x"}
    assert etl_job.parse_args([]) == {}
