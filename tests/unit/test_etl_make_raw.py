"""make_raw: the committed iris file is reproducible, synthetic files are as requested."""

from __future__ import annotations

from collections import Counter

import pytest
from sklearn.datasets import load_iris

from data_platform import make_raw
from helper.settings import REPO_ROOT, get_settings


@pytest.fixture(scope="module")
def spec():
    return get_settings().dataset


def test_committed_iris_file_is_what_make_raw_generates(tmp_path):
    out = make_raw.write_lines(tmp_path / "iris.data", make_raw.iris_lines())
    assert out.read_bytes() == (REPO_ROOT / "data" / "iris.data").read_bytes()


def test_iris_lines_have_uci_form_and_sklearn_values(spec):
    lines = make_raw.iris_lines()
    bunch = load_iris()
    assert len(lines) == len(bunch.data)
    for line, row, target in zip(lines, bunch.data, bunch.target, strict=True):
        fields = line.split(",")
        assert [float(v) for v in fields[:4]] == pytest.approx(list(row))
        assert fields[4] == spec.classes[target]


def test_synthetic_lines_are_deterministic_and_break_the_requested_share(spec):
    a = make_raw.synthetic_lines(700, spec, seed=3, malformed_fraction=0.1)
    b = make_raw.synthetic_lines(700, spec, seed=3, malformed_fraction=0.1)
    c = make_raw.synthetic_lines(700, spec, seed=4, malformed_fraction=0.1)
    assert a == b
    assert a != c
    kinds = Counter(line.expect for line in a if line.expect)
    assert sum(kinds.values()) == 70
    assert set(kinds) == set(make_raw.MALFORMED_KINDS)


def test_synthetic_good_lines_use_known_classes(spec):
    lines = make_raw.synthetic_lines(200, spec, seed=1)
    assert all(line.expect is None for line in lines)
    assert {line.text.split(",")[-1] for line in lines} == set(spec.classes)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n": -1}, "n"),
        ({"malformed_fraction": 1.5}, "malformed_fraction"),
        ({"kinds": ["x"]}, "kinds"),
    ],
)
def test_synthetic_lines_reject_bad_arguments_naming_the_field(spec, kwargs, field):
    args = {"n": 10, **kwargs}
    n = args.pop("n")
    with pytest.raises(ValueError, match=f"^{field}:"):
        make_raw.synthetic_lines(n, spec, **args)


def test_write_lines_bom_and_crlf(tmp_path):
    path = make_raw.write_lines(tmp_path / "x.data", ["a", "b"], bom=True, crlf=True)
    assert path.read_bytes() == b"\xef\xbb\xbfa\r\nb\r\n"


def test_write_synthetic_streams_every_kind_deterministically(spec, tmp_path):
    """Chunked writing (what makes 10^8 lines fit in memory) gives the same file for the same
    arguments, exactly `rows` lines, and the intended reasons with every kind present."""
    a = make_raw.write_synthetic(tmp_path / "a", 5000, spec, malformed_fraction=0.02, chunk=700)
    b = make_raw.write_synthetic(tmp_path / "b", 5000, spec, malformed_fraction=0.02, chunk=700)
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()
    assert a == b and sum(a.values()) == 5000
    assert set(a) == {None, *make_raw.MALFORMED_KINDS}
    lines = (tmp_path / "a").read_text().split("\n")
    assert len(lines) == 5001 and lines[-1] == ""  # final newline, nothing else
    good = [
        line for line in lines[:-1] if line.count(",") == 4 and line.endswith(tuple(spec.classes))
    ]
    assert len(good) >= a[None]
    assert not list(tmp_path.glob("*.tmp"))
