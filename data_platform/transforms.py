"""Pure Spark transforms: raw text lines -> typed rows + rejects -> train/test split.

Every function takes DataFrames (and the DatasetSpec) and returns DataFrames; none
reads, writes or looks at settings, so the unit tests exercise exactly what the
cluster job runs. A line is either parsed into `features` (double) + `label` (int
index into `spec.classes`) or kept verbatim with the first reason it failed, so
nothing is silently dropped and an operator can see why from the rejects table.
"""

from __future__ import annotations

import math

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from helper.settings import DatasetSpec

RAW_COL = "raw_line"
REASON_COL = "reason"
SPLIT_COL = "is_test"
LABEL_COL = "label"  # the lake's label column, whatever the raw file calls it

# Checked in this order; a line gets the first that applies.
REASONS: tuple[str, ...] = (
    "blank_line",
    "duplicate_header",
    "wrong_column_count",
    "missing_value",
    "non_numeric",
    "non_finite",
    "unknown_class",
)

# A plain decimal number. Stricter than Spark's cast, which (through Java) also takes
# "1d", "0x1p3" or "1f": such values in a measurement file are typos, not numbers.
_NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_NON_FINITE = r"(?i)^[+-]?(nan|inf|infinity)$"


def col(name: str) -> Column:
    """A column by its exact name: data-set names may hold dots, spaces or digits only, which
    `F.col("a.b")` or `select("a.b")` would read as a nested field."""
    return F.col("`" + name.replace("`", "``") + "`")


def _clean(col: Column) -> Column:
    """Strip whitespace of any kind (Spark's trim only strips spaces)."""
    return F.regexp_replace(col, r"^\s+|\s+$", "")


def normalize_lines(raw: DataFrame, text_col: str = "value") -> DataFrame:
    """Text rows -> `raw_line` without a leading UTF-8 BOM or trailing CR (other columns kept).

    `spark.read.text` already splits on LF, CR and CRLF; the CR strip covers files that
    reach us by other routes. The BOM only sits on the first line but is harmless to test
    everywhere and keeps this independent of partitioning.
    """
    line = F.regexp_replace(F.col(text_col), "^\ufeff", "")
    return raw.withColumn(RAW_COL, F.regexp_replace(line, "\r+$", "")).drop(text_col)


def _is_header(fields: Column, spec: DatasetSpec) -> Column:
    names = F.array(*(F.lit(name.lower()) for name in spec.columns))
    return F.transform(fields, lambda field: F.lower(_clean(field))) == names


def parse_lines(lines: DataFrame, spec: DatasetSpec) -> DataFrame:
    """`raw_line` rows -> `raw_line`, `reason` (null when good), features (double), `label`.

    For a rejected line the typed columns are null. A header row anywhere in the data is a
    `duplicate_header` reject: a file with `spec.header` has its first line removed before
    this (see `drop_header`), so any further one comes from concatenated files.
    """
    n_cols = len(spec.columns)
    fields = F.split(F.col(RAW_COL), ",", -1)
    # try_element_at: a short line yields nulls instead of an ANSI out-of-bounds error.
    values = [_clean(F.try_element_at(fields, F.lit(i + 1))) for i in range(len(spec.features))]
    label_text = _clean(F.try_element_at(fields, F.lit(len(spec.features) + 1)))
    # Cast only what the regex accepted: no reliance on try_cast (Spark 4 only; the cluster
    # image runs Spark 3.5) and no ANSI-mode cast errors ("-nan" is not a Spark literal).
    doubles = [F.when(v.rlike(_NUMBER), v.cast("double")) for v in values]
    # A map, not array_position: Spark 3.5's array_position only takes a literal value.
    class_map = F.create_map(*(F.lit(x) for c, i in spec.label_index.items() for x in (c, i)))
    label_index = F.try_element_at(class_map, label_text)

    def any_of(checks: list[Column]) -> Column:
        out = checks[0]
        for check in checks[1:]:
            out = out | check
        return out

    checks: list[tuple[str, Column]] = [
        ("blank_line", F.col(RAW_COL).rlike(r"^\s*$")),
        ("duplicate_header", _is_header(fields, spec)),
        ("wrong_column_count", F.size(fields) != n_cols),
        ("missing_value", any_of([v == "" for v in values]) | (label_text == "")),
        ("non_numeric", any_of([~v.rlike(_NUMBER) & ~v.rlike(_NON_FINITE) for v in values])),
        (
            "non_finite",
            any_of(
                [
                    v.rlike(_NON_FINITE) | (F.abs(d) == float("inf"))
                    for v, d in zip(values, doubles, strict=True)
                ]
            ),
        ),
        ("unknown_class", label_index.isNull()),
    ]
    reason = F.lit(None).cast("string")
    for name, check in reversed(checks):
        reason = F.when(check, F.lit(name)).otherwise(reason)

    good = F.col(REASON_COL).isNull()
    typed = [F.when(good, d).alias(name) for d, name in zip(doubles, spec.features, strict=True)]
    label = F.when(good, label_index.cast("int"))
    return lines.withColumn(REASON_COL, reason).select(
        RAW_COL, REASON_COL, *typed, label.alias(LABEL_COL)
    )


def drop_header(lines: DataFrame, spec: DatasetSpec, line_id_col: str) -> DataFrame:
    """Remove the file's own header (the first line) when `spec.header` says there is one.

    `line_id_col` must grow with the position in the file (monotonically_increasing_id on
    a single file read does). Only the first line is dropped, and only if it looks like the
    header, so a headerless file declared with a header loses nothing.
    """
    if not spec.header:
        return lines.drop(line_id_col)
    first = lines.agg(F.min(line_id_col)).first()[0]
    fields = F.split(F.col(RAW_COL), ",", -1)
    keep = (F.col(line_id_col) != F.lit(first)) | ~_is_header(fields, spec)
    return lines.where(keep).drop(line_id_col)


def good_rows(parsed: DataFrame, spec: DatasetSpec) -> DataFrame:
    """The parsed lines that passed every check: features + `label`, nothing else."""
    cols = [col(name).cast("double").alias(name) for name in spec.features]
    return parsed.where(F.col(REASON_COL).isNull()).select(
        *cols, F.col(LABEL_COL).cast("int").alias(LABEL_COL)
    )


def rejects(parsed: DataFrame) -> DataFrame:
    """The rejected lines, verbatim, with their reason."""
    return parsed.where(F.col(REASON_COL).isNotNull()).select(RAW_COL, REASON_COL)


SPLIT_BUCKET_BITS = 12  # hash buckets per class: 4,096


def assign_split(
    rows: DataFrame,
    spec: DatasetSpec,
    seed: int,
    test_fraction: float,
    bucket_bits: int = SPLIT_BUCKET_BITS,
) -> DataFrame:
    """Add `is_test`: per class, the round(n * test_fraction) rows with the lowest
    (hash(seed, row values), row values) are test.

    The order depends only on the rows' content and the seed, never on partitioning or
    input order, so the same input and seed give the same split on a laptop and on a
    cluster. Stratified and exact per class: iris is small, and a plain hash threshold
    left one class with 4 of 28 test rows. Identical rows compare equal and so land on
    the same side (no leakage through duplicates).

    Why not a window `rank()` per class: it sorts each class in ONE task, so 10^7 rows of
    three classes used three cores and spilled. Instead each class's cut-off is found
    from a histogram over the top `bucket_bits` bits of the hash (one aggregation) and an
    exact sort of the few rows in the bucket the cut-off falls in (collected to the
    driver); then marking the rows is a map-only pass. Runs two small Spark jobs.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction: must be in (0, 1), got {test_fraction}")
    names = [*spec.features, LABEL_COL]
    key = F.xxhash64(F.lit(seed).cast("long"), *[col(n) for n in names])
    keyed = rows.withColumn("_key", key).withColumn(
        "_bucket", F.shiftright(F.col("_key"), 64 - bucket_bits)
    )
    order = F.struct(F.col("_key"), *[col(n) for n in names])
    is_test = F.lit(False)
    for label, (bucket, cut) in _split_cutoffs(keyed, names, test_fraction).items():
        values = zip(names, cut[1:], strict=True)
        cut_struct = F.struct(
            F.lit(cut[0]).cast("long").alias("_key"),
            *[F.lit(v).cast(rows.schema[n].dataType).alias(n) for n, v in values],
        )
        below = (F.col("_bucket") < bucket) | ((F.col("_bucket") == bucket) & (order <= cut_struct))
        is_test = F.when(F.col(LABEL_COL) == label, below).otherwise(is_test)
    return keyed.withColumn(SPLIT_COL, is_test).drop("_key", "_bucket")


def _split_cutoffs(keyed: DataFrame, names: list[str], fraction: float) -> dict[int, tuple]:
    """label -> (bucket, (key, *row values)) of the last test row, for classes with a quota."""
    hist: dict[int, dict[int, int]] = {}
    for row in keyed.groupBy(LABEL_COL, "_bucket").count().collect():
        hist.setdefault(row[LABEL_COL], {})[row["_bucket"]] = row["count"]
    need: dict[int, tuple[int, int]] = {}  # label -> (bucket, rank of the cut-off inside it)
    for label, buckets in hist.items():
        quota = math.floor(sum(buckets.values()) * fraction + 0.5)  # Spark's round (half up)
        seen = 0
        for bucket in sorted(buckets):
            if quota and seen + buckets[bucket] >= quota:
                need[label] = (bucket, quota - seen)
                break
            seen += buckets[bucket]
    if not need:
        return {}
    wanted = F.lit(False)
    for label, (bucket, _) in need.items():
        wanted = wanted | ((F.col(LABEL_COL) == label) & (F.col("_bucket") == bucket))
    boundary: dict[int, list[tuple]] = {}
    for row in keyed.where(wanted).select(LABEL_COL, "_key", *[col(n) for n in names]).collect():
        boundary.setdefault(row[0], []).append(tuple(row[1:]))
    return {
        label: (bucket, sorted(boundary[label])[nth - 1]) for label, (bucket, nth) in need.items()
    }


def split(
    rows: DataFrame, spec: DatasetSpec, seed: int, test_fraction: float
) -> tuple[DataFrame, DataFrame]:
    """(train, test) DataFrames with the lake's columns: features + `label`."""
    marked = assign_split(rows, spec, seed, test_fraction)
    cols = [col(n) for n in (*spec.features, LABEL_COL)]
    return (
        marked.where(~F.col(SPLIT_COL)).select(*cols),
        marked.where(F.col(SPLIT_COL)).select(*cols),
    )


def count_by_reason(parsed: DataFrame) -> dict[str | None, int]:
    """{reason: count} with the key None for good rows, in one pass over the data."""
    return {
        row[REASON_COL]: row["n"]
        for row in parsed.groupBy(REASON_COL).count().withColumnRenamed("count", "n").collect()
    }
