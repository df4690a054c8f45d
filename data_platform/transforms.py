"""Pure Spark transforms: raw text lines -> typed rows + rejects (the train/test split of the
good rows is `data_platform.holdout`).

Every function takes DataFrames (and the DatasetSpec) and returns DataFrames; none
reads, writes or looks at settings, so the unit tests exercise exactly what the
cluster job runs. A line is either parsed into `features` (double) + `label` (int
index into `spec.classes`) or kept verbatim with the first reason it failed, so
nothing is silently dropped and an operator can see why from the rejects table.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from data_platform.rejects import REASONS
from helper.settings import DatasetSpec

RAW_COL = "raw_line"
REASON_COL = "reason"
SPLIT_COL = "is_test"
LABEL_COL = "label"  # the lake's label column, whatever the raw file calls it


# A plain decimal number. Stricter than Spark's cast, which (through Java) also takes
# "1d", "0x1p3" or "1f": such values in a measurement file are typos, not numbers.
_NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_NON_FINITE = r"(?i)^[+-]?(nan|inf|infinity)$"


def col(name: str) -> Column:
    """A column by its exact name: data-set names may hold dots, spaces or digits only, which
    `F.col("a.b")` or `select("a.b")` would read as a nested field."""
    return F.col("`" + name.replace("`", "``") + "`")


# What Java's `\s` matches; `btrim` strips exactly these (the baseline's ascii_trim too).
SPACE = " \t\n\x0b\x0c\r"


def _clean(col: Column) -> Column:
    """Strip whitespace of any kind (Spark's one-argument trim only strips spaces); a
    character-set trim, not a regex: it runs once per field of every line."""
    return F.btrim(col, F.lit(SPACE))


def normalize_lines(raw: DataFrame, text_col: str = "value") -> DataFrame:
    """Text rows -> `raw_line` without a leading UTF-8 BOM or trailing CR (other columns kept).

    `spark.read.text` already splits on LF, CR and CRLF; the CR strip covers files that
    reach us by other routes. The BOM only sits on the first line but is harmless to test
    everywhere and keeps this independent of partitioning.
    """
    # Each regex behind a plain substring test: the same result, but a line without a BOM
    # or a CR (all but one, in a file read by Spark) costs a byte scan, not a regex match.
    text = F.col(text_col)
    line = F.when(text.startswith("\ufeff"), F.regexp_replace(text, "^\ufeff", "")).otherwise(text)
    stripped = F.when(line.contains("\r"), F.regexp_replace(line, "\r+$", "")).otherwise(line)
    return raw.withColumn(RAW_COL, stripped).drop(text_col)


def _is_header(fields: Column, spec: DatasetSpec) -> Column:
    names = F.array(*(F.lit(name.lower()) for name in spec.columns))
    return F.transform(fields, lambda field: F.lower(_clean(field))) == names


def _any(checks: list[Column]) -> Column:
    out = checks[0]
    for check in checks[1:]:
        out = out | check
    return out


def _all(checks: list[Column]) -> Column:
    out = checks[0]
    for check in checks[1:]:
        out = out & check
    return out


def _fields(lines: DataFrame, n_cols: int) -> DataFrame:
    """Split once: `raw_line`, `__n` (field count) and the cleaned fields `__f0`.. (null
    past the end of a short line: try_element_at, not an ANSI out-of-bounds error)."""
    fields = F.split(F.col(RAW_COL), ",", -1)
    cleaned = [
        _clean(F.try_element_at(fields, F.lit(i + 1))).alias(f"__f{i}") for i in range(n_cols)
    ]
    return lines.select(RAW_COL, F.size(fields).alias("__n"), *cleaned)


def _numbers(fields: DataFrame, n_feat: int) -> DataFrame:
    """Add `__num<i>` (the field is a plain decimal) and `__d<i>` (its double, else null).
    Cast only what the regex accepted: no reliance on try_cast (Spark 4 only; the cluster
    image runs Spark 3.5) and no ANSI-mode cast errors ("-nan" is not a Spark literal)."""
    nums = [F.col(f"__f{i}").rlike(_NUMBER).alias(f"__num{i}") for i in range(n_feat)]
    with_nums = fields.select("*", *nums)
    doubles = [
        F.when(F.col(f"__num{i}"), F.col(f"__f{i}").cast("double")).alias(f"__d{i}")
        for i in range(n_feat)
    ]
    return with_nums.select("*", *doubles)


def _reason(spec: DatasetSpec) -> Column:
    """The first failed check (REASONS order) over the `_fields`/`_numbers` columns, or
    null. CASE WHEN is lazy: a line pays only for the checks up to its own reason, and the
    non-finite regex runs only on fields that are not numbers (the two never overlap)."""
    n_cols, n_feat = len(spec.columns), len(spec.features)
    f = [F.col(f"__f{i}") for i in range(n_cols)]
    num = [F.col(f"__num{i}") for i in range(n_feat)]
    word = [~num[i] & f[i].rlike(_NON_FINITE) for i in range(n_feat)]
    infinite = [F.abs(F.col(f"__d{i}")) == float("inf") for i in range(n_feat)]
    right_width = F.col("__n") == n_cols
    header = [F.lower(f[i]) == name.lower() for i, name in enumerate(spec.columns)]
    checks: list[tuple[str, Column]] = [
        # a comma is not whitespace: only a one-field line can be blank (no trim per line)
        ("blank_line", (F.col("__n") == 1) & (_clean(F.col(RAW_COL)) == "")),
        ("duplicate_header", right_width & _all(header)),
        ("wrong_column_count", ~right_width),
        ("missing_value", _any([v == "" for v in f])),
        ("non_numeric", _any([~num[i] & ~word[i] for i in range(n_feat)])),
        ("non_finite", _any([word[i] | infinite[i] for i in range(n_feat)])),
        ("unknown_class", F.col("__label").isNull()),
    ]
    assert tuple(name for name, _ in checks) == REASONS
    reason = F.lit(None).cast("string")
    for name, check in reversed(checks):
        reason = F.when(check, F.lit(name)).otherwise(reason)
    return reason


def parse_lines(lines: DataFrame, spec: DatasetSpec) -> DataFrame:
    """`raw_line` rows -> `raw_line`, `reason` (null when good), features (double), `label`.

    For a rejected line the typed columns are null. A header row anywhere in the data is a
    `duplicate_header` reject: a file with `spec.header` has its first line removed before
    this (see `drop_header`), so any further one comes from concatenated files.

    Built as stacked projections, each computing a value once (split, trim, regex, cast)
    that later ones reference several times: one nested expression re-evaluated the
    split, the trims and the regexes in every check (read/parse stage at 10^6 lines, warm
    session on the shared 2-core machine: 58 s before, ~8 s after, cache build included).
    """
    n_cols, n_feat = len(spec.columns), len(spec.features)
    # A map, not array_position: Spark 3.5's array_position only takes a literal value.
    class_map = F.create_map(*(F.lit(x) for c, i in spec.label_index.items() for x in (c, i)))
    staged = _numbers(_fields(lines, n_cols), n_feat).withColumn(
        "__label", F.try_element_at(class_map, F.col(f"__f{n_feat}"))
    )
    checked = staged.withColumn(REASON_COL, _reason(spec))
    good = F.col(REASON_COL).isNull()
    typed = [F.when(good, F.col(f"__d{i}")).alias(name) for i, name in enumerate(spec.features)]
    label = F.when(good, F.col("__label").cast("int"))
    return checked.select(RAW_COL, REASON_COL, *typed, label.alias(LABEL_COL))


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


def compact(parsed: DataFrame) -> DataFrame:
    """`parse_lines` output with the raw text kept only for rejected lines: what the job
    caches (parse once, then tally, cut off and write from the cache); the good lines' text
    would triple the cache for nothing."""
    text = F.when(F.col(REASON_COL).isNotNull(), F.col(RAW_COL)).alias(RAW_COL)
    return parsed.select(text, *[c for c in parsed.columns if c != RAW_COL])


def rejects(parsed: DataFrame) -> DataFrame:
    """The rejected lines, verbatim, with their reason."""
    return parsed.where(F.col(REASON_COL).isNotNull()).select(RAW_COL, REASON_COL)


def count_by_reason(parsed: DataFrame) -> dict[str | None, int]:
    """{reason: count} with the key None for good rows, in one pass over the data."""
    return {
        row[REASON_COL]: row["n"]
        for row in parsed.groupBy(REASON_COL).count().withColumnRenamed("count", "n").collect()
    }
