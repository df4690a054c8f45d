"""The contract path: `.env.best_run` names an s3:// model (as the registry writes it) and
`serve:up` serves it, downloading through MLflow from the local S3 server."""

from __future__ import annotations

import boto3
import pytest
import requests

from helper.processes import free_port
from helper.settings import load_settings
from inference_service.example_models import save_iris_models
from inference_service.serving_stack import ServingStack

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_serving_a_model_from_s3(local_stack, tmp_path):
    models = save_iris_models(tmp_path / "models")
    s3 = boto3.client("s3", **local_stack.s3_client_kwargs())
    prefix = "mlflow/1/models/m-test/artifacts"
    for path in models["xgboost"].rglob("*"):
        if path.is_file():
            key = f"{prefix}/{path.relative_to(models['xgboost'])}"
            s3.upload_file(str(path), local_stack.s3_bucket, key)
    uri = f"s3://{local_stack.s3_bucket}/{prefix}"
    best = tmp_path / ".env.best_run"
    best.write_text(f"MODEL_NAME=iris-classifier\nMODEL_VERSION=5\nSTORAGE_URI={uri}\n")
    settings = load_settings(
        state_dir=tmp_path / "state",
        serve_port=free_port(),
        predictor_ports=(free_port(), free_port()),
    )
    stack = ServingStack(settings, best)
    try:
        st = stack.up()
        assert st.champion.storage_uri == uri
        url = f"http://127.0.0.1:{settings.serve_port}/v2/models/{st.model_name}/infer"
        body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                            "data": [6.7, 3.0, 5.2, 2.3]}]}  # fmt: skip
        r = requests.post(url, json=body, timeout=30)
        assert r.status_code == 200, r.text
        assert r.headers["x-model-version"] == "5"
        outs = {o["name"]: o["data"] for o in r.json()["outputs"]}
        assert outs["label"] == ["Iris-virginica"]
        downloaded = list((settings.state_dir / "serving" / "models").rglob("MLmodel"))
        assert downloaded, "the model was not fetched into the state dir"
    finally:
        stack.down()
