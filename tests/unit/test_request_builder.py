"""inference_service/request_builder.py: the default request for any data set."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from helper.settings import REPO_ROOT, load_settings
from inference_service import request_builder as rb

DATASETS = REPO_ROOT / "data_platform" / "datasets"


def test_iris_default_request_is_the_yaml_example_same_as_input_json():
    body = rb.default_request(load_settings(dataset_config=DATASETS / "iris.yaml"))
    example = json.loads((REPO_ROOT / "inference_service" / "input.json").read_text())
    got = {i["name"]: i["data"] for i in body["inputs"]}
    assert got == {i["name"]: i["data"] for i in example["inputs"]}
    assert body["parameters"] == {"content_type": "pd"}


def test_signature_sets_order_and_datatype():
    spec = load_settings(dataset_config=DATASETS / "iris.yaml").dataset
    meta = {"inputs": [{"name": "petal_width", "datatype": "FP32", "shape": [-1]},
                       {"name": "sepal_length", "datatype": "FP64", "shape": [-1]}]}  # fmt: skip
    inputs = rb.signature_inputs(meta, spec)
    assert inputs == [("petal_width", "FP32"), ("sepal_length", "FP64")]
    body = rb.build_request([{"petal_width": 0.2, "sepal_length": 5.1}], inputs)
    assert body["inputs"][0] == {"name": "petal_width", "shape": [1], "datatype": "FP32",
                                 "data": [0.2]}  # fmt: skip


def test_no_metadata_falls_back_to_the_dataset_features():
    spec = load_settings(dataset_config=DATASETS / "breast_cancer.yaml").dataset
    for meta in (None, {}, {"inputs": []}, {"error": "not found"}):
        assert [n for n, _ in rb.signature_inputs(meta, spec)] == spec.features


def test_a_model_of_another_dataset_is_named():
    spec = load_settings(dataset_config=DATASETS / "breast_cancer.yaml").dataset
    with pytest.raises(rb.RequestError, match=r"\['sepal_length'\].*MLP_DATASET_CONFIG"):
        rb.signature_inputs({"inputs": [{"name": "sepal_length"}]}, spec)


def test_without_example_a_held_out_test_row_is_sent(monkeypatch):
    settings = load_settings(dataset_config=DATASETS / "breast_cancer.yaml")
    spec = settings.dataset
    row = {f: float(i) + 0.5 for i, f in enumerate(spec.features)}
    frame = pd.DataFrame([row, {f: 9.0 for f in spec.features}]).assign(label=1)
    import data_platform.lake as lake

    monkeypatch.setattr(lake, "latest_manifest", lambda *a, **k: {"version": "v"})
    monkeypatch.setattr(lake, "read_split", lambda m, split, settings=None: frame)
    body = rb.default_request(settings)
    assert [i["name"] for i in body["inputs"]] == spec.features
    assert [i["data"] for i in body["inputs"]] == [[v] for v in row.values()]
    assert len(rb.default_request(settings, n=2)["inputs"][0]["data"]) == 2


def test_no_example_and_no_lake_says_what_to_run(tmp_path):
    settings = load_settings(
        dataset_config=DATASETS / "breast_cancer.yaml", lake_uri=str(tmp_path / "none")
    )
    with pytest.raises(rb.RequestError, match="task data:etl"):
        rb.default_request(settings)


def test_rows_missing_an_input_or_non_finite_are_refused():
    with pytest.raises(rb.RequestError, match="no value for input 'b'"):
        rb.build_request([{"a": 1.0}], [("a", "FP32"), ("b", "FP32")])
    with pytest.raises(rb.RequestError, match="non-finite"):
        rb.build_request([{"a": float("nan")}], [("a", "FP32")])


def test_cli_prints_model_name_and_a_request(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("MLP_DATASET_CONFIG", str(DATASETS / "breast_cancer.yaml"))
    assert rb.main(["--model-name"]) == 0
    assert capsys.readouterr().out.strip() == "breast-cancer-classifier"
    monkeypatch.setenv("MLP_DATASET_CONFIG", str(DATASETS / "iris.yaml"))
    meta = tmp_path / "meta.json"
    meta.write_text("not json")  # a failed metadata fetch: fall back to the features
    assert rb.main(["--metadata", str(meta)]) == 0
    body = json.loads(capsys.readouterr().out)
    assert len(body["inputs"]) == 4
