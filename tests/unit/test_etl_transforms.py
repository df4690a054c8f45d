"""transforms: every malformed kind, label mapping, header, BOM/CRLF, split determinism."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyspark.sql import functions as F

from data_platform import holdout as H
from data_platform import make_raw
from data_platform import transforms as T
from helper.settings import DatasetSpec, get_settings

GOOD = "5.1,3.5,1.4,0.2,Iris-setosa"


@pytest.fixture(scope="module")
def spec() -> DatasetSpec:
    return get_settings().dataset


def parse(spark, spec, lines):
    frame = spark.createDataFrame([(line,) for line in lines], "value string")
    return T.parse_lines(T.normalize_lines(frame), spec)


def reasons(spark, spec, lines):
    return [row[T.REASON_COL] for row in parse(spark, spec, lines).collect()]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("", "blank_line"),
        (" \t ", "blank_line"),
        ("sepal_length,sepal_width,petal_length,petal_width,species", "duplicate_header"),
        ("Sepal_Length, SEPAL_WIDTH,petal_length,petal_width,species", "duplicate_header"),
        ("5.1,3.5,1.4,Iris-setosa", "wrong_column_count"),
        ("5.1,3.5,1.4,0.2,Iris-setosa,", "wrong_column_count"),
        ("5.1;3.5;1.4;0.2;Iris-setosa", "wrong_column_count"),
        ("5.1,,1.4,0.2,Iris-setosa", "missing_value"),
        ("5.1,3.5,1.4,0.2, ", "missing_value"),
        ("5.1,abc,1.4,0.2,Iris-setosa", "non_numeric"),
        ("5.1,3.5cm,1.4,0.2,Iris-setosa", "non_numeric"),
        ("5.1,1d,1.4,0.2,Iris-setosa", "non_numeric"),
        ("5.1,0x1p3,1.4,0.2,Iris-setosa", "non_numeric"),
        ("5.1,1.2.3,1.4,0.2,Iris-setosa", "non_numeric"),
        ("NaN,3.5,1.4,0.2,Iris-setosa", "non_finite"),
        ("5.1,inf,1.4,0.2,Iris-setosa", "non_finite"),
        ("5.1,3.5,-Infinity,0.2,Iris-setosa", "non_finite"),
        ("5.1,3.5,1.4,1e999,Iris-setosa", "non_finite"),
        ("5.1,3.5,1.4,0.2,Iris-unknown", "unknown_class"),
        ("5.1,3.5,1.4,0.2,iris-setosa", "unknown_class"),
        (GOOD, None),
        (" 5.1 ,\t3.5,1.4 , 2e-1 , Iris-setosa ", None),
        ("+5.1,.5,1.,0,Iris-virginica", None),
    ],
)
def test_each_line_gets_its_reason(spark, spec, line, reason):
    assert reasons(spark, spec, [line]) == [reason]


def test_rejected_lines_keep_their_raw_text_and_good_ones_their_values(spark, spec):
    parsed = parse(spark, spec, [GOOD, "5.1,abc,1.4,0.2,Iris-setosa"])
    (rejected,) = T.rejects(parsed).collect()
    assert rejected.asDict() == {"raw_line": "5.1,abc,1.4,0.2,Iris-setosa", "reason": "non_numeric"}
    (good,) = T.good_rows(parsed, spec).collect()
    assert good.asDict() == {
        "sepal_length": 5.1,
        "sepal_width": 3.5,
        "petal_length": 1.4,
        "petal_width": 0.2,
        "label": 0,
    }
    types = dict(T.good_rows(parsed, spec).dtypes)
    assert types == {**{f: "double" for f in spec.features}, "label": "int"}


def test_labels_follow_the_order_of_spec_classes(spark, spec):
    lines = [f"1,2,3,4,{name}" for name in spec.classes]
    forward = [r.label for r in T.good_rows(parse(spark, spec, lines), spec).collect()]
    reordered = spec.model_copy(update={"classes": list(reversed(spec.classes))})
    backward = [r.label for r in T.good_rows(parse(spark, reordered, lines), reordered).collect()]
    assert forward == list(range(len(spec.classes)))
    assert backward == list(reversed(forward))


def test_bom_and_crlf_files_parse_like_plain_ones(spark, spec, tmp_path):
    lines = make_raw.iris_lines()[:20]
    plain = make_raw.write_lines(tmp_path / "plain.data", lines)
    odd = make_raw.write_lines(tmp_path / "odd.data", lines, bom=True, crlf=True)

    def good(path):
        parsed = T.parse_lines(T.normalize_lines(spark.read.text(str(path))), spec)
        return sorted(tuple(r) for r in T.good_rows(parsed, spec).collect())

    assert len(good(plain)) == 20
    assert good(odd) == good(plain)


def test_header_file_loses_only_its_first_line(spark, spec):
    header = ",".join(spec.columns)
    with_header = spec.model_copy(update={"header": True})
    frame = spark.createDataFrame(
        [(header, 0), (GOOD, 1), (header, 2)], "value string, line_id long"
    )
    lines = T.normalize_lines(frame)
    kept = T.parse_lines(T.drop_header(lines, with_header, "line_id"), with_header)
    assert [r.reason for r in kept.orderBy("raw_line").collect()] == [None, "duplicate_header"]
    untouched = T.parse_lines(T.drop_header(lines, spec, "line_id"), spec)
    assert untouched.count() == 3


def test_synthetic_fuzz_lines_get_exactly_the_expected_reasons(spark, spec):
    raw = make_raw.synthetic_lines(2000, spec, seed=11, malformed_fraction=0.3)
    got = reasons(spark, spec, [line.text for line in raw])
    assert got == [line.expect for line in raw]


def _split(spark, spec, lines, seed, partitions=1, fraction=0.2):
    frame = spark.createDataFrame([(line,) for line in lines], "value string")
    good = T.good_rows(T.parse_lines(T.normalize_lines(frame.repartition(partitions)), spec), spec)
    train, test = H.split(good, spec, seed, fraction)
    return sorted(tuple(r) for r in train.collect()), sorted(tuple(r) for r in test.collect())


def test_split_is_reproducible_and_independent_of_partitioning_and_order(spark, spec):
    lines = make_raw.iris_lines()
    first = _split(spark, spec, lines, seed=42)
    assert _split(spark, spec, lines, seed=42) == first
    assert _split(spark, spec, list(reversed(lines)), seed=42, partitions=7) == first


def test_different_seed_gives_a_different_split(spark, spec):
    lines = make_raw.iris_lines()
    assert _split(spark, spec, lines, seed=1)[1] != _split(spark, spec, lines, seed=2)[1]


def test_split_is_stratified_with_exact_share_per_class(spark, spec):
    lines = [line.text for line in make_raw.synthetic_lines(300, spec, seed=5)]
    train, test = _split(spark, spec, lines, seed=9, fraction=0.25)
    assert len(train) + len(test) == 300
    per_class_total = {c: sum(1 for line in lines if line.endswith(c)) for c in spec.classes}
    per_class_test = {spec.classes[row[-1]]: 0 for row in test}
    for row in test:
        per_class_test[spec.classes[row[-1]]] += 1
    for name, total in per_class_total.items():
        assert abs(per_class_test.get(name, 0) - total * 0.25) <= 1


def test_identical_rows_land_on_the_same_side(spark, spec):
    lines = make_raw.iris_lines()[:30] * 3
    frame = spark.createDataFrame([(line,) for line in lines], "value string")
    good = T.good_rows(T.parse_lines(T.normalize_lines(frame), spec), spec)
    marked = H.assign_split(good, spec, seed=42, test_fraction=0.3)
    sides = marked.groupBy(*spec.features, "label").agg(F.countDistinct(T.SPLIT_COL).alias("n"))
    assert sides.where("n > 1").count() == 0
    assert 0 < marked.where(T.SPLIT_COL).count() < 90


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_split_rejects_a_fraction_outside_0_1(spark, spec, fraction):
    frame = spark.createDataFrame([(GOOD,)], "value string")
    good = T.good_rows(T.parse_lines(T.normalize_lines(frame), spec), spec)
    with pytest.raises(ValueError, match="^test_fraction:"):
        H.assign_split(good, spec, 1, fraction)


def test_count_by_reason_counts_good_rows_under_none(spark, spec):
    parsed = parse(spark, spec, [GOOD, GOOD, "", "x"])
    assert T.count_by_reason(parsed) == {None: 2, "blank_line": 1, "wrong_column_count": 1}


_FIELDISH = st.text(alphabet=",.0123456789eE+-naifINFx \t\ufeffIris-setosa", max_size=40)
_LINES = st.lists(
    st.one_of(_FIELDISH, st.sampled_from(make_raw.iris_lines()), st.text(max_size=30)),
    min_size=1,
    max_size=60,
)


@settings(max_examples=8, deadline=None)
@given(lines=_LINES)
def test_any_text_is_parsed_or_rejected_never_lost(spark, spec, lines):
    lines = [line.replace("\n", " ").replace("\r", " ") for line in lines]
    rows = parse(spark, spec, lines).collect()
    assert sorted(r.raw_line for r in rows) == sorted(line.removeprefix("\ufeff") for line in lines)
    for row in rows:
        if row.reason is None:
            values = [row[name] for name in spec.features]
            assert all(v is not None and math.isfinite(v) for v in values), row
            assert 0 <= row.label < len(spec.classes)
        else:
            assert row.reason in T.REASONS
            assert row.label is None


@pytest.mark.parametrize("bucket_bits", [1, 3, H.SPLIT_BUCKET_BITS])
def test_split_equals_the_per_class_rank_definition_at_any_bucket_size(spark, spec, bucket_bits):
    """The histogram + boundary-sort cut-off marks exactly the rows a per-class window rank
    (the obvious, unscalable definition) would; 1 bit puts half a class in the cut-off bucket."""
    from pyspark.sql.window import Window

    lines = [line.text for line in make_raw.synthetic_lines(400, spec, seed=3)]
    lines += lines[:40]  # duplicates: each pair must land on the same side
    frame = spark.createDataFrame([(line,) for line in lines], "value string").repartition(5)
    good = T.good_rows(T.parse_lines(T.normalize_lines(frame), spec), spec)
    content = [F.col(n) for n in [*spec.features, "label"]]
    by_class = Window.partitionBy("label")
    key = F.xxhash64(F.lit(11).cast("long"), *content)
    reference = good.withColumn(
        "ref",
        F.rank().over(by_class.orderBy(key, *content))
        <= F.round(F.count(F.lit(1)).over(by_class) * F.lit(0.3)),
    )
    marked = H.assign_split(reference, spec, seed=11, test_fraction=0.3, bucket_bits=bucket_bits)
    rows = marked.select("ref", T.SPLIT_COL).collect()
    assert len(rows) == len(lines) and sum(r[1] for r in rows) > 0
    assert all(r[0] == r[1] for r in rows)


def test_odd_numeric_feature_names_and_a_binary_label_go_through_parse_and_split(spark):
    odd = DatasetSpec(
        name="odd",
        raw_file="odd.csv",
        header=True,
        features=["1", "a.b", "mean radius", "x (cm)"],
        label="target",
        classes=["neg", "pos"],
    )
    lines = ["1,a.b,mean radius,x (cm),target"] + [
        f"{i}.5,{i % 3},{i * 2},{i % 7}.25,{'pos' if i % 2 else 'neg'}" for i in range(40)
    ]
    frame = spark.createDataFrame(
        [(i, line) for i, line in enumerate(lines)], "id long, value string"
    )
    parsed = T.parse_lines(T.drop_header(T.normalize_lines(frame), odd, "id"), odd)
    good = T.good_rows(parsed, odd)
    assert good.count() == 40 and good.columns == [*odd.features, T.LABEL_COL]
    train, test = H.split(good, odd, seed=1, test_fraction=0.25)
    assert (train.count(), test.count()) == (30, 10)
    assert sorted(r[T.LABEL_COL] for r in test.collect()) == [0] * 5 + [1] * 5
    assert test.columns == [*odd.features, T.LABEL_COL]
