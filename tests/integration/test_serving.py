"""Real predictor processes behind HAProxy: requests, errors, canary split, promotion."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests

from helper.processes import ServiceError, free_port
from helper.settings import load_settings
from inference_service.example_models import FEATURES, iris_frame, save_iris_models
from inference_service.loadgen import load
from inference_service.serving_stack import ServingStack
from inference_service.state import Revision

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MAX_ROWS = 500


@dataclass
class Serving:
    stack: ServingStack
    models: dict[str, Path]
    url: str  # proxy base URL
    name: str

    @property
    def infer(self) -> str:
        return f"{self.url}/v2/models/{self.name}/infer"


def write_best_run(path: Path, version: str, storage_uri: Path | str) -> None:
    path.write_text(
        f"MODEL_NAME=iris-classifier\nMODEL_VERSION={version}\nSTORAGE_URI={storage_uri}\n"
    )


@pytest.fixture(scope="module")
def serving(tmp_path_factory) -> Iterator[Serving]:
    tmp = tmp_path_factory.mktemp("serving")
    models = save_iris_models(tmp / "models")
    settings = load_settings(
        state_dir=tmp / "state",
        serve_port=free_port(),
        predictor_ports=(free_port(), free_port()),
        proxy_stats_port=free_port(),
        prometheus_port=free_port(),
        max_batch_rows=MAX_ROWS,
    )
    best = tmp / ".env.best_run"
    write_best_run(best, "1", models["xgboost"])
    stack = ServingStack(settings, best)
    try:
        stack.up()
        base = f"http://127.0.0.1:{settings.serve_port}"
        yield Serving(stack, models, base, settings.registered_model_name)
    finally:
        stack.down()


def named_body(rows: np.ndarray, with_id: bool = False) -> dict:
    inputs = [
        {"name": f, "shape": [len(rows)], "datatype": "FP32", "data": rows[:, j].tolist()}
        for j, f in enumerate(FEATURES)
    ]
    body = {"inputs": inputs, "parameters": {"content_type": "pd"}}
    return {**body, "id": "req-1"} if with_id else body


def tensor_body(rows) -> dict:
    rows = np.asarray(rows, dtype=float)
    data = rows.reshape(-1).tolist()
    return {"inputs": [{"name": "input-0", "shape": list(rows.shape), "datatype": "FP32",
                        "data": data}]}  # fmt: skip


def post(url: str, body) -> requests.Response:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(url, data=data, headers={"content-type": "application/json"}, timeout=30)


def wait_for_version(serving: Serving, version: str, timeout: float = 10.0) -> None:
    """HAProxy's health check takes a slot into rotation within ~0.5 s; wait for it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = post(serving.infer, tensor_body([[5.1, 3.5, 1.4, 0.2]]))
        if r.headers.get("x-model-version") == version:
            return
        time.sleep(0.1)
    raise AssertionError(f"version {version} never answered through the proxy")


def split(serving: Serving, n: int) -> Counter:
    body = json.dumps(tensor_body([[6.1, 2.8, 4.7, 1.2]])).encode()
    result = load(serving.infer, body, requests=n, concurrency=4, warmup=0)
    assert result.statuses == Counter({200: n}), result.statuses
    return result.header_values


def test_valid_v2_and_v1_requests(serving):
    frame, _ = iris_frame()
    rows = frame.to_numpy()[[0, 60, 120]]
    named = post(serving.infer, named_body(rows))
    assert named.status_code == 200, named.text
    assert named.headers["x-model-version"] == "1" and named.headers["x-revision"] == "champion"
    doc = named.json()
    assert doc["id"]  # a request without id works and gets one
    outs = {o["name"]: o["data"] for o in doc["outputs"]}
    tensor = post(serving.infer, {**tensor_body(rows), "id": "abc"}).json()
    assert tensor["id"] == "abc"
    assert {o["name"]: o["data"] for o in tensor["outputs"]}["predict"] == outs["predict"]
    v1 = post(f"{serving.url}/v1/models/{serving.name}:predict", {"instances": rows.tolist()})
    assert v1.status_code == 200 and v1.json()["predictions"] == outs["predict"]
    assert outs["label"] == [["Iris-setosa", "Iris-versicolor", "Iris-virginica"][i]
                             for i in outs["predict"]]  # fmt: skip
    ready = requests.get(f"{serving.url}/v2/models/{serving.name}/ready", timeout=5)
    assert ready.status_code == 200 and ready.json()["ready"] is True
    meta = requests.get(f"{serving.url}/v2/models/{serving.name}", timeout=5).json()
    assert [i["name"] for i in meta["inputs"]] == FEATURES
    status = serving.stack.status()  # what `task serve:status` prints
    champ = str(serving.stack.state().champion.port)
    assert status["proxy_servers"][champ]["status"] == "UP"
    assert status["proxy_servers"][champ]["weight"] == 100
    assert all(status["processes"][p] for p in ("haproxy", "prometheus", f"predictor-{champ}"))


def _named_with(feature: str, **change) -> dict:
    body = named_body(np.array([[5.1, 3.5, 1.4, 0.2]]))
    for inp in body["inputs"]:
        if inp["name"] == feature:
            inp.update(change)
    return body


MALFORMED = {
    "non-JSON body": ("this is not json", "not valid JSON"),
    "missing feature": ({"inputs": named_body(np.ones((1, 4)))["inputs"][1:]}, "sepal_length"),
    "wrong datatype": (_named_with("sepal_width", datatype="BYTES", data=["x"]), "sepal_width"),
    "shape/data mismatch": (_named_with("petal_length", shape=[3]), "petal_length"),
    "non-finite": (
        '{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,NaN,4]}]}',
        "non-finite",
    ),  # fmt: skip
    "empty batch": (tensor_body(np.ones((0, 4))), "empty batch"),
    "batch above limit": (tensor_body(np.ones((MAX_ROWS + 1, 4))), "max_batch_rows"),
    "inputs not a list": ({"inputs": "nope"}, "inputs"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_requests_are_4xx_naming_the_problem_and_serving_goes_on(serving, case):
    body, needle = MALFORMED[case]
    bad = post(serving.infer, body)
    assert 400 <= bad.status_code < 500, (bad.status_code, bad.text)
    assert needle in bad.json()["error"]
    good = post(serving.infer, tensor_body([[5.9, 3.0, 5.1, 1.8]]))
    assert good.status_code == 200


def test_v1_malformed_is_4xx(serving):
    bad = post(f"{serving.url}/v1/models/{serving.name}:predict", {"instances": [[1, 2]]})
    assert bad.status_code == 400 and "instances[0]" in bad.json()["error"]


def test_a_canary_that_fails_to_load_never_gets_traffic(serving, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "MLmodel").write_text("flavors: {}\n")  # no signature, no flavour
    with pytest.raises(ServiceError):
        serving.stack.canary(50, Revision(version="9", storage_uri=str(broken), port=1))
    assert serving.stack.state().canary is None
    assert split(serving, 100) == Counter({"1": 100})


def test_canary_split_is_within_binomial_tolerance(serving):
    rev = Revision(version="2", storage_uri=str(serving.models["sklearn"]), port=1)
    serving.stack.canary(30, rev)
    wait_for_version(serving, "2")
    n = 1200
    counts = split(serving, n)
    share = counts["2"] / n
    sigma = (0.3 * 0.7 / n) ** 0.5
    assert set(counts) == {"1", "2"} and abs(share - 0.3) < 4 * sigma, counts


def test_rollback_sends_nothing_to_the_canary(serving):
    serving.stack.rollback()
    time.sleep(0.6)
    assert split(serving, 300) == Counter({"1": 300})
    assert serving.stack.state().champion.version == "1"


def test_promote_makes_the_canary_the_champion_at_100_percent(serving):
    serving.stack.canary(100, Revision(version="2", storage_uri="unused", port=1))
    wait_for_version(serving, "2")
    old_port = serving.stack.state().champion.port
    serving.stack.promote()
    time.sleep(0.6)
    assert split(serving, 300) == Counter({"2": 300})
    r = post(serving.infer, tensor_body([[5.1, 3.5, 1.4, 0.2]]))
    assert r.headers["x-revision"] == "champion"
    assert serving.stack.status()["processes"][f"predictor-{old_port}"] is None


def test_a_canary_that_dies_loses_no_request(serving):
    rev = Revision(version="3", storage_uri=str(serving.models["xgboost"]), port=1)
    st = serving.stack.canary(50, rev)
    wait_for_version(serving, "3")
    serving.stack._slot_process(st.canary.port).stop()
    counts = split(serving, 300)  # asserts every request got a 200
    assert counts["2"] >= 290  # at most a stale in-flight answer from the dying canary


def test_state_survives_a_restart_of_every_serving_process(serving):
    before = serving.stack.state()
    serving.stack.down()
    assert all(pid is None for pid in serving.stack.status()["processes"].values())
    after = serving.stack.up()
    assert (after.champion, after.canary, after.canary_percent) == (
        before.champion,
        before.canary,
        before.canary_percent,
    )
    versions = {rev.version for _, rev, _ in before.routes()}
    wait_for_version(serving, before.canary.version)  # the restarted canary is back in the split
    assert set(split(serving, 200)) == versions
