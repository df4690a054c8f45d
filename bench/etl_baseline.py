"""The ETL transform in one process with pyarrow: the baseline the Spark job is measured against.

Same rules as `data_platform.transforms` (same reject reasons, checked in the same order,
same number grammar, the first line dropped only when it is the header), same outputs
(train/test/rejects Parquet + a summary). The split is the same rule — per class, the
round(n * test_fraction) rows with the lowest hash(seed, row values) are test, identical
rows share a rank — but hashes with a vectorised splitmix64 instead of Spark's xxhash64:
the same sizes per class, just as deterministic, different rows on each side.

    python -m bench.etl_baseline --raw FILE --out DIR   # prints a JSON summary
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from data_platform.transforms import _NON_FINITE, _NUMBER, REASONS
from helper.errors import run_cli
from helper.settings import DatasetSpec, load_settings

JAVA_SPACE = " \t\n\x0b\x0c\r"  # what Java's \s (used by transforms._clean) matches


def read_lines(path: Path) -> pa.Array:
    """The file's lines as strings, blank ones kept (a field delimiter that never occurs)."""
    table = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=["raw_line"], block_size=16 << 20),
        parse_options=pacsv.ParseOptions(
            delimiter="\x1f", quote_char=False, escape_char=False, ignore_empty_lines=False
        ),
        convert_options=pacsv.ConvertOptions(
            column_types={"raw_line": pa.string()}, strings_can_be_null=False
        ),
    )
    lines = table.column("raw_line").combine_chunks()
    lines = pc.replace_substring_regex(lines, "^\ufeff", "")
    return pc.replace_substring_regex(lines, "\r+$", "")


def _any(masks: list[pa.Array]) -> pa.Array:
    out = masks[0]
    for m in masks[1:]:
        out = pc.or_(out, m)
    return out


def _all(masks: list[pa.Array]) -> pa.Array:
    out = masks[0]
    for m in masks[1:]:
        out = pc.and_(out, m)
    return out


def parse(lines: pa.Array, spec: DatasetSpec) -> dict:
    """Reason per line (null = good), typed feature columns and label index."""
    n_cols = len(spec.columns)
    n_fields = pc.list_value_length(pc.split_pattern(lines, ","))
    # Padding makes every line long enough to index, like Spark's try_element_at -> null.
    padded = pc.split_pattern(pc.binary_join_element_wise(lines, "," * n_cols, ""), ",")
    fields = [pc.ascii_trim(pc.list_element(padded, i), JAVA_SPACE) for i in range(n_cols)]
    values, label_text = fields[:-1], fields[-1]
    names = [c.lower() for c in spec.columns]
    is_number = [pc.match_substring_regex(v, _NUMBER) for v in values]
    is_nonfinite_word = [pc.match_substring_regex(v, _NON_FINITE) for v in values]
    doubles = [
        pc.cast(pc.if_else(pc.or_(a, b), v, "0"), pa.float64())
        for v, a, b in zip(values, is_number, is_nonfinite_word, strict=True)
    ]
    label_index = pc.index_in(label_text, value_set=pa.array(spec.classes))
    checks = {
        "blank_line": pc.equal(pc.ascii_trim(lines, JAVA_SPACE), ""),
        "duplicate_header": pc.and_(
            pc.equal(n_fields, n_cols),
            _all([pc.equal(pc.utf8_lower(f), n) for f, n in zip(fields, names, strict=True)]),
        ),
        "wrong_column_count": pc.not_equal(n_fields, n_cols),
        "missing_value": _any([pc.equal(v, "") for v in fields]),
        "non_numeric": _any(
            [pc.invert(pc.or_(a, b)) for a, b in zip(is_number, is_nonfinite_word, strict=True)]
        ),
        "non_finite": _any([pc.or_(pc.is_nan(d), pc.is_inf(d)) for d in doubles]),
        "unknown_class": pc.is_null(label_index),
    }
    assert tuple(checks) == REASONS, "keep the order of data_platform.transforms.REASONS"
    reason = pa.nulls(len(lines), pa.string())
    for name in reversed(REASONS):
        reason = pc.if_else(pc.fill_null(checks[name], False), name, reason)
    return {"reason": reason, "doubles": doubles, "label": label_index}


def drop_header(lines: pa.Array, spec: DatasetSpec) -> pa.Array:
    """Remove the first line when the spec declares a header and the line is one."""
    if not spec.header or len(lines) == 0:
        return lines
    first = [f.strip().lower() for f in lines[0].as_py().split(",")]
    return lines.slice(1) if first == [c.lower() for c in spec.columns] else lines


def row_hash(features: list[np.ndarray], label: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64 chained over the row's values, starting from the seed."""
    h = np.full(len(label), np.uint64(seed), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for col in [*features, label.astype(np.float64)]:
            h ^= np.ascontiguousarray(col, dtype=np.float64).view(np.uint64)
            h += np.uint64(0x9E3779B97F4A7C15)
            h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            h ^= h >> np.uint64(31)
    return h


def split_mask(features: list[np.ndarray], label: np.ndarray, seed: int, fraction: float):
    """True for test rows: per class, rank by (hash, values); rank <= round(n * fraction).

    Ties (identical rows) share the rank of their first occurrence, as Spark's rank() does."""
    h = row_hash(features, label, seed)
    is_test = np.zeros(len(label), dtype=bool)
    for cls in np.unique(label):
        idx = np.flatnonzero(label == cls)
        keys = [f[idx] for f in reversed(features)] + [h[idx]]
        order = idx[np.lexsort(keys)]
        sorted_cols = [h[order], *(f[order] for f in features)]
        new_group = np.ones(len(order), dtype=bool)
        new_group[1:] = np.any([c[1:] != c[:-1] for c in sorted_cols], axis=0)
        first_pos = np.where(new_group, np.arange(1, len(order) + 1), 0)
        rank = np.maximum.accumulate(first_pos)
        is_test[order] = rank <= round(len(idx) * fraction)
    return is_test


def run_baseline(raw: Path, out: Path, spec: DatasetSpec, seed: int, test_fraction: float) -> dict:
    """Parse, check, split and write Parquet; returns the counts and the seconds taken."""
    started = time.perf_counter()
    lines = drop_header(read_lines(raw), spec)
    parsed = parse(lines, spec)
    good = pc.is_null(parsed["reason"])
    feats = [pc.filter(d, good).to_numpy(zero_copy_only=False) for d in parsed["doubles"]]
    label = pc.filter(parsed["label"], good).to_numpy(zero_copy_only=False).astype(np.int32)
    is_test = split_mask(feats, label, seed, test_fraction)
    rows = pa.table({**dict(zip(spec.features, feats, strict=True)), "label": label})
    rejected = pa.table({"raw_line": lines, "reason": parsed["reason"]}).filter(pc.invert(good))
    out.mkdir(parents=True, exist_ok=True)
    for name, table in (
        ("train", rows.filter(pa.array(~is_test))),
        ("test", rows.filter(pa.array(is_test))),
        ("rejects", rejected),
    ):
        (out / name).mkdir(exist_ok=True)
        pq.write_table(table, out / name / "part-0.parquet")
    by_reason = pc.value_counts(rejected.column("reason")).to_pylist()
    return {
        "rows_in": len(lines),
        "rows_out": int(len(label)),
        "train_rows": int((~is_test).sum()),
        "test_rows": int(is_test.sum()),
        "rejects_by_reason": {d["values"]: d["counts"] for d in by_reason},
        "duration_s": round(time.perf_counter() - started, 3),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.etl_baseline", description=__doc__)
    p.add_argument("--raw", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if not args.raw.is_file():
        print(f"error: --raw: no file at {args.raw}", file=sys.stderr)
        return 2
    settings = load_settings()
    summary = run_baseline(
        args.raw, args.out, settings.dataset, settings.seed, settings.test_fraction
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    run_cli(main)
