"""The ETL job: raw CSV -> parsed, checked, split -> Parquet in the lake + manifest.

This file is what the SparkApplication runs (`spark-submit data_platform/etl_job.py`)
and what runs on a laptop (`python -m data_platform.etl_job`); only the session's
configuration differs (see `data_platform.session`). The run is refused (exit 1,
nothing published) when too many lines are rejected or none is good: a bad raw file
must not silently become the training set. Output is published by writing the
manifest last, so the previous version stays current until a run fully succeeds.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from urllib.parse import urlparse

from py4j.protocol import Py4JJavaError
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from data_platform import holdout as H
from data_platform import lake
from data_platform import transforms as T
from data_platform.session import build_spark
from helper.dataset import DatasetError, check_raw_file
from helper.errors import PlatformError, run_cli
from helper.settings import DatasetSpec, Settings, load_settings

LINE_ID = "_line_id"


class EtlError(PlatformError, RuntimeError):
    """The run was refused or failed; `summary` says what was seen."""

    def __init__(self, message: str, summary: dict) -> None:
        super().__init__(message)
        self.summary = {**summary, "status": "failed", "error": message}


def _absolute(uri: str) -> str:
    """Local paths made absolute (the manifest must be readable from any cwd)."""
    return uri if urlparse(uri).scheme in {"s3", "s3a", "file"} else str(Path(uri).resolve())


def _spark_uri(uri: str) -> str:
    """Spark/Hadoop speak s3a://, never s3:// (no such Hadoop filesystem is configured)."""
    return "s3a://" + uri[len("s3://") :] if uri.startswith("s3://") else uri


def _why(exc: Exception) -> str:
    """One readable line: the Java exception for Py4J errors, not "error calling o45.text"."""
    if isinstance(exc, Py4JJavaError):
        text = str(exc.java_exception.toString())
        if "No FileSystem for scheme" in text:
            text += (
                " (local Spark has no hadoop-aws jar: use a local path; s3a runs on the cluster)"
            )
        return text
    return (str(exc).strip().splitlines() or ["?"])[0]


SPLIT_BYTES = 128 << 20  # Spark's default largest input split


def balance_splits(spark: SparkSession, raw_uri: str) -> None:
    """Cut the raw file into a multiple of the cores' count of splits of <= 128 MiB.

    Spark's default cuts 128 MiB splits: 343 MB (10^7 lines) became 3 tasks on 2 cores, so
    every pass over the data (the parse, the cached tally, cut-off and writes) ran a second
    wave on one core. Missing files are left to the read, which names them."""
    jvm, conf = spark.sparkContext._jvm, spark.sparkContext._jsc.hadoopConfiguration()
    path = jvm.org.apache.hadoop.fs.Path(raw_uri)
    try:
        size = path.getFileSystem(conf).getContentSummary(path).getLength()
    except Py4JJavaError:
        return
    cores = max(1, spark.sparkContext.defaultParallelism)
    splits = cores * max(1, math.ceil(size / (cores * SPLIT_BYTES)))
    spark.conf.set("spark.sql.files.maxPartitionBytes", str(max(1, math.ceil(size / splits))))


def read_parsed(spark: SparkSession, raw_uri: str, spec: DatasetSpec) -> DataFrame:
    """Raw text file -> parsed lines (see transforms.parse_lines); errors name raw_uri."""
    balance_splits(spark, raw_uri)
    try:
        raw = spark.read.text(raw_uri)
    except (AnalysisException, Py4JJavaError) as exc:  # missing file, no s3a jar, no access
        raise EtlError(
            f"raw_uri: cannot read '{raw_uri}': {_why(exc)}", {"raw_uri": raw_uri}
        ) from exc
    lines = T.normalize_lines(raw.withColumn(LINE_ID, F.monotonically_increasing_id()))
    return T.parse_lines(T.drop_header(lines, spec, LINE_ID), spec)


def check_quality(counts: dict[str | None, int], max_reject_ratio: float, summary: dict) -> None:
    """Refuse the run when nothing is good or the reject share exceeds the limit."""
    rows_in = sum(counts.values())
    good = counts.get(None, 0)
    if good == 0:
        raise EtlError(f"no good rows among {rows_in} lines", summary)
    ratio = (rows_in - good) / rows_in
    if ratio > max_reject_ratio:
        raise EtlError(
            f"reject ratio {ratio:.4f} exceeds max_reject_ratio {max_reject_ratio}", summary
        )


def put_text(spark: SparkSession, uri: str, text: str) -> None:
    """Write a small text file through Hadoop's filesystem, so the job needs one set of
    credentials (the s3a ones the SparkApplication configures). Locally: temp file +
    rename, so readers never see half a manifest; on S3 a single PUT is already atomic."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    final = jvm.org.apache.hadoop.fs.Path(uri)
    fs = final.getFileSystem(conf)
    fs.setWriteChecksum(False)
    direct = urlparse(uri).scheme == "s3a"
    target = final if direct else jvm.org.apache.hadoop.fs.Path(f"{uri}.{uuid.uuid4().hex}.tmp")
    out = fs.create(target, False)
    try:
        out.write(bytearray(text.encode("utf-8")))
    finally:
        out.close()
    if not direct and not fs.rename(target, final):
        raise OSError(f"could not publish {uri}")


def write_version(
    parsed: DataFrame,
    settings: Settings,
    tallied: tuple[dict[str | None, int], H.Histogram],
    base: str,
    version: str,
    stages_s: dict[str, float] | None = None,
) -> dict:
    """Write train/test/rejects Parquet under `base`, then the manifest; return it.
    `tallied` is `H.tally(parsed, ...)`: counts by reason and the split histogram.
    `stages_s` (read/parse, validate so far) gains split and write timings."""
    counts, hist = tallied
    stages_s = dict(stages_s or {})
    spec = settings.dataset
    t0 = time.perf_counter()
    good = T.good_rows(parsed, spec)
    cutoffs = H.split_cutoffs(good, spec, (settings.seed, settings.test_fraction), hist)
    marked = H.mark_split(good, spec, settings.seed, cutoffs)
    test_rows = sum(n for _, _, n in cutoffs.values())
    stages_s["split"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    cols = [T.col(n) for n in (*spec.features, T.LABEL_COL)]
    outputs = {
        "train": marked.where(~F.col(T.SPLIT_COL)).select(*cols),
        "test": marked.where(F.col(T.SPLIT_COL)).select(*cols),
        "rejects": T.rejects(parsed),
    }
    for split, frame in outputs.items():
        frame.write.mode("errorifexists").parquet(_spark_uri(lake.join(base, split)))
    stages_s["write"] = time.perf_counter() - t0
    manifest = lake.build_manifest(
        dataset=spec.name,
        version=version,
        raw_uri=_absolute(settings.raw_uri),
        features=spec.features,
        label=spec.label,
        classes=spec.classes,
        seed=settings.seed,
        test_fraction=settings.test_fraction,
        counts=counts,
        train_rows=counts.get(None, 0) - test_rows,
        test_rows=test_rows,
        base_uri=base,
        stages_s=stages_s,
    )
    # Last: until this file exists the version is invisible to every reader.
    put_text(
        parsed.sparkSession,
        _spark_uri(lake.join(base, lake.MANIFEST)),
        json.dumps(manifest, indent=2),
    )
    return manifest


def run_etl(spark: SparkSession, settings: Settings, now: datetime | None = None) -> dict:
    """Run the ETL once; return the summary (manifest + timing). Raises EtlError.

    The raw file is parsed once, into a cache without the good lines' text (spills to
    disk beyond memory); the tally, the split's cut-off and the three writes read that."""
    started = time.perf_counter()
    spec = settings.dataset
    raw_uri = _absolute(settings.raw_uri)
    parsed = T.compact(read_parsed(spark, _spark_uri(raw_uri), spec)).cache()
    # Listing the input and planning the cached query: seconds in a cold JVM, any size.
    stages = {"plan": time.perf_counter() - started}
    try:
        # The tally materialises the cache: it is the read/parse pass plus the aggregation.
        t0 = time.perf_counter()
        tallied = H.tally(parsed, spec, settings.seed)
        counts = tallied[0]
        stages["read_parse"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        summary = {
            "dataset": spec.name,
            "raw_uri": raw_uri,
            "rows_in": sum(counts.values()),
            "rows_out": counts.get(None, 0),
            "rejects_by_reason": {k: v for k, v in sorted(counts.items(), key=str) if k},
        }
        check_quality(counts, settings.max_reject_ratio, summary)
        stages["validate"] = time.perf_counter() - t0
        date, version = lake.new_version(now)
        base = lake.version_uri(_absolute(settings.lake_uri), spec.name, date, version)
        manifest = write_version(parsed, settings, tallied, base, version, stages)
    finally:
        parsed.unpersist()
    elapsed = round(time.perf_counter() - started, 3)
    return {"status": "published", "output": base, **manifest, "duration_s": elapsed}


def parse_args(argv: Sequence[str] | None) -> dict:
    """CLI flags override settings (handy as SparkApplication arguments)."""
    parser = argparse.ArgumentParser(prog="python -m data_platform.etl_job", description=__doc__)
    parser.add_argument("--raw-uri", dest="raw_uri")
    parser.add_argument("--lake-uri", dest="lake_uri")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--test-fraction", dest="test_fraction", type=float)
    parser.add_argument("--max-reject-ratio", dest="max_reject_ratio", type=float)
    return {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}


def main(argv: Sequence[str] | None = None) -> int:
    settings = load_settings(**parse_args(argv))
    try:  # before Spark's ~10 s start: a raw file that contradicts the YAML stops here
        check_raw_file(settings.dataset, _absolute(settings.raw_uri))
    except DatasetError as exc:
        print(f"ETL refused: {exc}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    spark = build_spark(f"etl-{settings.dataset.name}", settings)
    try:
        summary = run_etl(spark, settings)
        code = 0
    except EtlError as exc:
        summary, code = exc.summary, 1
        print(f"ETL refused: {exc}", file=sys.stderr)
    finally:
        spark.stop()
    summary["wall_s"] = round(time.perf_counter() - started, 3)
    print(json.dumps(summary, indent=2))
    return code


if __name__ == "__main__":
    run_cli(main)
