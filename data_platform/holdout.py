"""The held-out test set: a stratified, content-hash train/test split of the good rows.

Apart from parsing (`data_platform.transforms`) because it is its own algorithm: the order
of rows is a hash of their content and the seed, so the same input gives the same split on
a laptop and on a cluster, and each class's cut-off is found from a histogram plus an exact
sort of one bucket instead of a per-class sort. Pure functions on DataFrames, like the
transforms: nothing here reads, writes or looks at settings.
"""

from __future__ import annotations

import math

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from data_platform.transforms import LABEL_COL, REASON_COL, SPLIT_COL, col
from helper.settings import DatasetSpec

SPLIT_BUCKET_BITS = 12  # hash buckets per class: 4,096

Histogram = dict[int, dict[int, int]]  # label -> {bucket: rows}


def _split_names(spec: DatasetSpec) -> list[str]:
    return [*spec.features, LABEL_COL]


def _split_key(spec: DatasetSpec, seed: int) -> Column:
    """hash(seed, row values): the split's order, a function of content and seed only."""
    return F.xxhash64(F.lit(seed).cast("long"), *[col(n) for n in _split_names(spec)])


def _bucket(key: Column, bucket_bits: int) -> Column:
    return F.shiftright(key, 64 - bucket_bits)


def tally(
    parsed: DataFrame, spec: DatasetSpec, seed: int, bucket_bits: int = SPLIT_BUCKET_BITS
) -> tuple[dict[str | None, int], Histogram]:
    """({reason: lines} with None for good rows, split histogram of the good rows) from ONE
    aggregation over `parse_lines` output: the job needs both before it writes anything,
    and each extra pass over 10^8 lines costs as much as the aggregation itself."""
    good = F.col(REASON_COL).isNull()
    bucket = F.when(good, _bucket(_split_key(spec, seed), bucket_bits)).alias("_bucket")
    counts: dict[str | None, int] = {}
    hist: Histogram = {}
    for row in parsed.groupBy(REASON_COL, LABEL_COL, bucket).count().collect():
        reason, n = row[REASON_COL], row["count"]
        counts[reason] = counts.get(reason, 0) + n
        if reason is None:
            hist.setdefault(row[LABEL_COL], {})[row["_bucket"]] = n
    return counts, hist


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
    from a histogram over the top `bucket_bits` bits of the hash (one aggregation; the job
    takes it from `tally` instead) and an exact sort of the few rows in the bucket the
    cut-off falls in (collected to the driver); then marking the rows is a map-only pass.
    """
    cutoffs = split_cutoffs(rows, spec, (seed, test_fraction), bucket_bits=bucket_bits)
    return mark_split(rows, spec, seed, cutoffs, bucket_bits)


def split_cutoffs(
    rows: DataFrame,
    spec: DatasetSpec,
    rule: tuple[int, float],
    hist: Histogram | None = None,
    *,
    bucket_bits: int = SPLIT_BUCKET_BITS,
) -> dict[int, tuple[int, tuple, int]]:
    """label -> (bucket, (key, *row values) of the last test row, test rows of the class)
    for classes with a quota; `rule` is (seed, test_fraction). The test count is exact (rows
    equal to the cut-off row count too), so the job needs no pass to count what it writes."""
    seed, test_fraction = rule
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction: must be in (0, 1), got {test_fraction}")
    names = _split_names(spec)
    key = _split_key(spec, seed)
    keyed = rows.withColumn("_key", key).withColumn("_bucket", _bucket(key, bucket_bits))
    if hist is None:
        hist = {}
        for row in keyed.groupBy(LABEL_COL, "_bucket").count().collect():
            hist.setdefault(row[LABEL_COL], {})[row["_bucket"]] = row["count"]
    need = _cutoff_buckets(hist, test_fraction)
    if not need:
        return {}
    wanted = F.lit(False)
    for label, (bucket, _, _) in need.items():
        wanted = wanted | ((F.col(LABEL_COL) == label) & (F.col("_bucket") == bucket))
    boundary: dict[int, list[tuple]] = {}
    for row in keyed.where(wanted).select(LABEL_COL, "_key", *[col(n) for n in names]).collect():
        boundary.setdefault(row[0], []).append(tuple(row[1:]))
    out = {}
    for label, (bucket, nth, below) in need.items():
        ordered = sorted(boundary[label])
        cut = ordered[nth - 1]
        out[label] = (bucket, cut, below + sum(1 for r in ordered if r <= cut))
    return out


def _cutoff_buckets(hist: Histogram, fraction: float) -> dict[int, tuple[int, int, int]]:
    """label -> (bucket the cut-off falls in, its rank inside it, rows in lower buckets)."""
    need: dict[int, tuple[int, int, int]] = {}
    for label, buckets in hist.items():
        quota = math.floor(sum(buckets.values()) * fraction + 0.5)  # Spark's round (half up)
        seen = 0
        for bucket in sorted(buckets):
            if quota and seen + buckets[bucket] >= quota:
                need[label] = (bucket, quota - seen, seen)
                break
            seen += buckets[bucket]
    return need


def mark_split(
    rows: DataFrame,
    spec: DatasetSpec,
    seed: int,
    cutoffs: dict[int, tuple[int, tuple, int]],
    bucket_bits: int = SPLIT_BUCKET_BITS,
) -> DataFrame:
    """Add `is_test` from `split_cutoffs`: a map-only pass (no shuffle, no driver data)."""
    names = _split_names(spec)
    keyed = rows.withColumn("_key", _split_key(spec, seed))  # one hash per row, used twice
    at, order = _bucket(F.col("_key"), bucket_bits), F.struct("_key", *[col(n) for n in names])
    is_test = F.lit(False)
    for label, (bucket, cut, _) in cutoffs.items():
        values = zip(names, cut[1:], strict=True)
        cut_struct = F.struct(
            F.lit(cut[0]).cast("long").alias("_key"),
            *[F.lit(v).cast(rows.schema[n].dataType).alias(n) for n, v in values],
        )
        below = (at < bucket) | ((at == bucket) & (order <= cut_struct))
        is_test = F.when(F.col(LABEL_COL) == label, below).otherwise(is_test)
    return keyed.withColumn(SPLIT_COL, is_test).drop("_key")


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
