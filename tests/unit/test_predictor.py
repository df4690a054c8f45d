"""Predictor on small models built here: request parsing, native vs pyfunc, typed errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from kserve import InferRequest
from kserve.errors import InvalidInput
from kserve.protocol.rest.v2_datamodels import InferenceRequest

from helper.settings import load_settings
from inference_service.example_models import FEATURES, iris_frame, save_iris_models
from inference_service.model_loader import ModelLoadError, load_model
from inference_service.predictor import MlflowPredictor
from inference_service.request_parsing import rows_from_v1, rows_from_v2


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return save_iris_models(tmp_path_factory.mktemp("models"))


def v2(body: dict) -> InferRequest:
    """The object kserve hands to predict() for a REST v2 body."""
    return InferRequest.from_inference_request(InferenceRequest.model_validate(body), "iris")


def named_body(rows: np.ndarray, **extra) -> dict:
    inputs = [
        {"name": f, "shape": [len(rows)], "datatype": "FP32", "data": rows[:, j].tolist()}
        for j, f in enumerate(FEATURES)
    ]
    return {"inputs": inputs, "parameters": {"content_type": "pd"}, **extra}


def tensor_body(rows: np.ndarray) -> dict:
    data = rows.reshape(-1).tolist()
    return {"inputs": [{"name": "x", "shape": list(rows.shape), "datatype": "FP32", "data": data}]}


def predictor(models, settings=None, **kw) -> MlflowPredictor:
    p = MlflowPredictor("iris", settings or load_settings(), model_dir=models["xgboost"], **kw)
    p.load()
    return p


def outputs(reply) -> dict:
    doc = json.loads(reply) if isinstance(reply, bytes) else reply
    return {o["name"]: o["data"] for o in doc["outputs"]}


# --- parsing ---------------------------------------------------------------------------
def test_named_inputs_are_ordered_by_the_signature_not_the_request():
    rows = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)
    body = named_body(rows)
    body["inputs"].reverse()
    x = rows_from_v2(v2(body).inputs, FEATURES, 10)
    assert x.dtype == np.float32 and np.array_equal(x, rows)


def test_single_tensor_and_named_inputs_give_the_same_matrix():
    rows = np.random.default_rng(1).uniform(0, 8, (7, 4)).astype(np.float32)
    a = rows_from_v2(v2(named_body(rows)).inputs, FEATURES, 10)
    b = rows_from_v2(v2(tensor_body(rows)).inputs, FEATURES, 10)
    assert np.array_equal(a, b)


def test_v1_rows_as_lists_and_objects():
    obj = [dict(zip(FEATURES, [1, 2, 3, 4], strict=True))]
    assert rows_from_v1({"instances": obj}, FEATURES, 5).tolist() == [[1, 2, 3, 4]]
    assert rows_from_v1({"instances": [[1, 2, 3, 4]]}, FEATURES, 5).shape == (1, 4)


def _named(**override):
    rows = np.array([[5.1, 3.5, 1.4, 0.2]])
    body = named_body(rows)
    for inp in body["inputs"]:
        inp.update(override.get(inp["name"], {}))
    return body


BAD_V2 = {
    "missing feature": (
        {"inputs": _named()["inputs"][:3]},
        "petal_width",
    ),
    "wrong datatype": (_named(sepal_width={"datatype": "BYTES", "data": ["a"]}), "sepal_width"),
    "length mismatch": (_named(petal_length={"shape": [2]}), "petal_length"),
    "rows differ": (_named(petal_width={"shape": [2], "data": [1.0, 2.0]}), "petal_width"),
    "non-finite": (_named(sepal_length={"data": [float("nan")]}), "sepal_length"),
    "string numbers": (_named(sepal_length={"data": ["1.0"]}), "sepal_length"),
    "unknown input": (
        {
            "inputs": [
                *_named()["inputs"],
                {"name": "colour", "shape": [1], "datatype": "FP32", "data": [1]},
            ]
        },
        "colour",
    ),  # fmt: skip
    "tensor wrong width": (tensor_body(np.ones((2, 3))), "[N, 4]"),
    "empty batch": (tensor_body(np.ones((0, 4))), "empty batch"),
    "no inputs": ({"inputs": []}, "no inputs"),
}


@pytest.mark.parametrize("case", sorted(BAD_V2))
def test_malformed_v2_requests_name_the_offending_input(case):
    body, needle = BAD_V2[case]
    with pytest.raises(InvalidInput, match=None) as err:
        rows_from_v2(v2(body).inputs, FEATURES, 100)
    assert needle in str(err.value)


def test_batch_above_the_limit_is_refused_with_the_limit_named():
    with pytest.raises(InvalidInput) as err:
        rows_from_v2(v2(tensor_body(np.ones((11, 4)))).inputs, FEATURES, 10)
    assert "11 rows" in str(err.value) and "10" in str(err.value)


@pytest.mark.parametrize(
    "payload, needle",
    [
        ({"rows": []}, "instances"),
        ({"instances": [[1, 2, 3]]}, "instances[0]"),
        ({"instances": [{"sepal_length": 1}]}, "petal_width"),
        ({"instances": []}, "empty batch"),
        ({"instances": [[1, 2, 3, float("inf")]]}, "non-finite"),
    ],
)
def test_malformed_v1_requests(payload, needle):
    with pytest.raises(InvalidInput) as err:
        rows_from_v1(payload, FEATURES, 10)
    assert needle in str(err.value)


# --- models ----------------------------------------------------------------------------
@pytest.mark.slow  # builds and loads MLflow models (~10 s on 2 cores)
def test_xgboost_is_served_natively_and_agrees_with_the_model(models):
    import mlflow.xgboost

    frame, _ = iris_frame()
    loaded = load_model(models["xgboost"])
    assert loaded.engine == "native" and loaded.features == FEATURES
    x = frame.to_numpy(dtype=np.float32)
    reference = mlflow.xgboost.load_model(str(models["xgboost"])).predict(frame)
    assert np.array_equal(loaded.predict_labels(x), reference)
    proba = loaded.predict_proba(x)
    assert proba.shape == (len(x), 3) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)


@pytest.mark.slow  # builds and loads MLflow models (~10 s on 2 cores)
def test_pyfunc_fallback_for_other_flavours(models):
    import mlflow.sklearn

    frame, _ = iris_frame()
    loaded = load_model(models["sklearn"])
    assert loaded.engine == "pyfunc" and loaded.predict_proba is None
    reference = mlflow.sklearn.load_model(str(models["sklearn"])).predict(frame)
    assert np.array_equal(loaded.predict_labels(frame.to_numpy()), reference)


@pytest.mark.slow  # builds and loads MLflow models (~10 s on 2 cores)
def test_native_and_pyfunc_paths_agree_on_the_same_xgboost_model(models):
    frame, _ = iris_frame()
    x = frame.to_numpy(dtype=np.float32)
    native = load_model(models["xgboost"], engine="native").predict_labels(x)
    pyfunc = load_model(models["xgboost"], engine="pyfunc").predict_labels(x)
    assert np.array_equal(native, pyfunc)


@pytest.mark.slow  # builds and loads MLflow models (~10 s on 2 cores)
def test_a_model_without_signature_is_refused(models, tmp_path):
    broken = tmp_path / "nosig"
    shutil.copytree(models["xgboost"], broken)
    mlmodel = broken / "MLmodel"
    text = mlmodel.read_text()
    mlmodel.write_text(text[: text.index("signature:")] + "utc_time_created: '2026-01-01'\n")
    with pytest.raises(ModelLoadError, match="no input signature"):
        load_model(broken)


@pytest.mark.slow  # builds and loads MLflow models (~10 s on 2 cores)
def test_native_engine_refuses_a_non_xgboost_model(models):
    with pytest.raises(ModelLoadError, match="xgboost-flavour"):
        load_model(models["sklearn"], engine="native")


# --- the kserve.Model ------------------------------------------------------------------
@pytest.mark.slow  # builds and loads MLflow models (~10 s on 2 cores)
def test_predict_v2_without_id_gets_one_and_reports_the_version(models):
    p = predictor(models, model_version="7", class_names=["a", "b", "c"])
    rows = iris_frame()[0].to_numpy()[[0, 75, 149]]
    headers: dict = {}
    reply = p.predict(v2(named_body(rows)), {}, headers)
    doc = json.loads(reply)
    assert doc["id"] and doc["model_version"] == "7" and headers["x-model-version"] == "7"
    out = outputs(reply)
    expected = p.model.predict_labels(rows.astype(np.float32)).tolist()
    assert out["predict"] == expected
    assert out["label"] == [["a", "b", "c"][i] for i in expected]
    assert len(out["probabilities"]) == 3 * len(rows)


@pytest.mark.slow  # builds and loads MLflow models (~10 s on 2 cores)
def test_predict_keeps_a_given_id_and_serves_v1(models):
    p = predictor(models)
    rows = iris_frame()[0].to_numpy()[:4]
    assert json.loads(p.predict(v2({**tensor_body(rows), "id": "abc"})))["id"] == "abc"
    v1 = p.predict({"instances": rows.tolist()})
    assert v1["predictions"] == outputs(p.predict(v2(tensor_body(rows))))["predict"]


@pytest.mark.slow  # builds and loads MLflow models (~10 s on 2 cores)
def test_predictor_limit_comes_from_settings(models):
    p = predictor(models, settings=load_settings(max_batch_rows=3))
    with pytest.raises(InvalidInput, match="max_batch_rows"):
        p.predict(v2(tensor_body(np.ones((4, 4)))))
    assert outputs(p.predict(v2(tensor_body(np.ones((3, 4))))))["predict"]  # still serving


@pytest.mark.slow  # builds and loads MLflow models (~10 s on 2 cores)
def test_v1_body_that_is_not_json(models):
    with pytest.raises(InvalidInput, match="not valid JSON"):
        predictor(models).predict(b"{nope")


def test_a_download_cut_short_is_never_taken_for_a_cached_model(models, tmp_path, monkeypatch):
    """The store dies mid-download: nothing lands in the cache, and the next try downloads
    whole (the old code reused any directory that already held an MLmodel)."""
    import mlflow.artifacts

    from inference_service import model_loader

    settings = load_settings(state_dir=tmp_path / "state")
    source = models["xgboost"]

    def cut_short(artifact_uri, dst_path):
        shutil.copy(source / "MLmodel", dst_path)  # MLmodel first, then the connection drops
        raise ConnectionError("store went away")

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", cut_short)
    with pytest.raises(ModelLoadError, match="cannot download"):
        model_loader.fetch_model("s3://b/m/artifacts", settings)
    cache = settings.state_dir / "serving" / "models"
    assert list(cache.iterdir()) == []

    def whole(artifact_uri, dst_path):
        return shutil.copytree(source, f"{dst_path}/artifacts")

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", whole)
    local = model_loader.fetch_model("s3://b/m/artifacts", settings)
    assert (local / "MLmodel").is_file() and len(list(local.iterdir())) > 1
    assert load_model(local).predict_labels is not None
