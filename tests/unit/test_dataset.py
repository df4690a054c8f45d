"""helper/dataset.py: one YAML per data set; every inconsistency named at start-up."""

from __future__ import annotations

import textwrap

import pytest

from helper.dataset import DatasetError, check_raw_file, load_dataset_spec
from helper.settings import REPO_ROOT, SettingsError, load_settings

DATASETS = REPO_ROOT / "data_platform" / "datasets"


def write_yaml(tmp_path, body: str, name: str = "ds.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


GOOD = """\
    name: toy_set
    raw_file: toy.csv
    header: true
    features: ["1", "a.b", "x (cm)"]
    label: y
    classes: ["no", "yes"]
"""


@pytest.fixture
def toy(tmp_path):
    (tmp_path / "toy.csv").write_text("1,a.b,x (cm),y\n0.5,1,2,yes\n")
    return write_yaml(tmp_path, GOOD)


def test_both_shipped_datasets_load_and_match_their_raw_files():
    for name in ("iris.yaml", "breast_cancer.yaml"):
        s = load_settings(dataset_config=DATASETS / name)
        check_raw_file(s.dataset, s.raw_uri)
    bc = load_settings(dataset_config=DATASETS / "breast_cancer.yaml")
    assert bc.raw_uri == str(REPO_ROOT / "data" / "breast_cancer.csv")
    assert (bc.experiment_name, bc.registered_model_name) == (
        "breast_cancer-xgboost",
        "breast-cancer-classifier",
    )
    assert bc.dataset.header and len(bc.dataset.features) == 30
    assert bc.dataset.classes == ["malignant", "benign"]  # binary


def test_iris_keeps_its_names_and_example():
    s = load_settings(dataset_config=DATASETS / "iris.yaml")
    assert (s.experiment_name, s.registered_model_name) == ("iris-xgboost", "iris-classifier")
    assert s.raw_uri == str(REPO_ROOT / "data" / "iris.data")
    assert len(s.dataset.example) == 2


def test_raw_file_next_to_the_yaml_wins_and_names_derive_from_the_dataset(toy, tmp_path):
    s = load_settings(dataset_config=toy)
    assert s.raw_uri == str((tmp_path / "toy.csv").resolve())
    assert (s.experiment_name, s.registered_model_name) == (
        "toy_set-xgboost",
        "toy-set-classifier",
    )
    check_raw_file(s.dataset, s.raw_uri)  # odd numeric names, header line: consistent


def test_environment_still_overrides_raw_file_and_names(toy, tmp_path, monkeypatch):
    other = tmp_path / "other.csv"
    other.write_text("1,a.b,x (cm),y\n")
    monkeypatch.setenv("MLP_RAW_URI", str(other))
    monkeypatch.setenv("MLP_EXPERIMENT_NAME", "exp")
    monkeypatch.setenv("MLP_REGISTERED_MODEL_NAME", "my-model")
    s = load_settings(dataset_config=toy)
    assert (s.raw_uri, s.experiment_name, s.registered_model_name) == (
        str(other),
        "exp",
        "my-model",
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"features": '["a", "y"]'}, "label 'y' is also listed among the features"),
        ({"classes": '["no", "yes", "no"]'}, "duplicate class names: no"),
        ({"classes": '["No", "no"]'}, "duplicate class names: no"),
        ({"features": '["a", "b", "a"]'}, "duplicate feature names: a"),
        ({"features": '["a[0]", "b"]'}, "feature name 'a[0]' contains '['"),
        ({"features": '["a,b", "c"]'}, "feature name 'a,b' contains ','"),
        ({"features": '[" a", "b"]'}, "leading or trailing whitespace"),
        ({"classes": '["only"]'}, "classes: List should have at least 2 items"),
        ({"name": "Bad Name"}, "name: String should match pattern"),
        ({"colour": "blue"}, "colour: Extra inputs are not permitted"),
    ],
)
def test_inconsistent_yaml_is_refused_naming_the_problem(tmp_path, change, message):
    fields = {
        "name": "toy",
        "raw_file": "toy.csv",
        "features": '["a", "b"]',
        "label": "y",
        "classes": '["no", "yes"]',
    } | change
    path = write_yaml(tmp_path, "".join(f"{k}: {v}\n" for k, v in fields.items()))
    with pytest.raises(DatasetError) as err:
        load_dataset_spec(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_example_rows_must_name_exactly_the_features(tmp_path):
    path = write_yaml(
        tmp_path,
        GOOD + '    example:\n      - {"1": 1.0, "a.b": 2.0, "z": 3.0}\n',
    )
    with pytest.raises(DatasetError, match=r"example row 0: missing \['x \(cm\)'\], unknown"):
        load_dataset_spec(path)


def test_settings_stop_at_start_up_with_one_line_naming_the_yaml(tmp_path):
    path = write_yaml(
        tmp_path, "name: t\nraw_file: t.csv\nfeatures: [a, y]\nlabel: y\nclasses: [p, q]\n"
    )
    with pytest.raises(SettingsError) as err:
        load_settings(dataset_config=path)
    text = str(err.value)
    assert text.startswith("invalid setting dataset_config:") and "label 'y'" in text
    assert len(text.splitlines()) == 1


def test_missing_raw_file_names_where_it_looked(tmp_path):
    path = write_yaml(tmp_path, GOOD.replace("toy.csv", "nowhere.csv"))
    s = load_settings(dataset_config=path)  # a predictor needs no raw file: settings load
    with pytest.raises(DatasetError, match="raw file missing") as err:
        check_raw_file(s.dataset, s.raw_uri)
    assert str(tmp_path / "nowhere.csv") in str(err.value) and "data/nowhere.csv" in str(err.value)


@pytest.mark.parametrize(
    ("header", "first_line", "message"),
    [
        ("true", "1,a.b,y", "first line has 3 columns, the data set describes 4"),
        ("false", "0.1,0.2,0.3,0.4,yes", "none of its first 2 lines has 4 columns"),
        ("true", "0.1,0.2,0.3,yes", "header: true but the first line"),
        ("false", "", "is empty"),
    ],
)
def test_raw_file_contradicting_the_yaml_is_refused(tmp_path, header, first_line, message):
    second = "0.1,0.2,0.3,0.4,no" if header == "false" else "0.1,0.2,0.3,yes"
    (tmp_path / "toy.csv").write_text(first_line + (f"\n{second}\n" if first_line else ""))
    s = load_settings(dataset_config=write_yaml(tmp_path, GOOD.replace("true", header)))
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_raw_file(s.dataset, s.raw_uri)


@pytest.mark.parametrize("first_line", ["1,a.b,x (cm),y", "0.1,0.2,yes", "not,a,row,at,all"])
def test_a_malformed_first_row_of_a_headerless_file_is_left_to_the_quarantine(tmp_path, first_line):
    (tmp_path / "toy.csv").write_text(f"{first_line}\n0.1,0.2,0.3,yes\n")
    s = load_settings(dataset_config=write_yaml(tmp_path, GOOD.replace("true", "false")))
    check_raw_file(s.dataset, s.raw_uri)


def test_headerless_file_with_bom_and_crlf_passes(tmp_path):
    (tmp_path / "toy.csv").write_bytes("\ufeff0.5,1,2,yes\r\n".encode())
    s = load_settings(dataset_config=write_yaml(tmp_path, GOOD.replace("true", "false")))
    check_raw_file(s.dataset, s.raw_uri)


def test_object_store_raw_uri_is_not_opened(toy, monkeypatch):
    monkeypatch.setenv("MLP_RAW_URI", "s3a://bucket/raw/toy/toy.csv")
    s = load_settings(dataset_config=toy)
    check_raw_file(s.dataset, s.raw_uri)
