"""The curl/jq prediction script and the serve notebook against a real local endpoint."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from helper.processes import free_port
from helper.settings import REPO_ROOT, load_settings
from inference_service.example_models import save_iris_models
from inference_service.serving_stack import ServingStack
from inference_service.state import Revision

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCRIPT = REPO_ROOT / "inference_service" / "prediction"


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory) -> Iterator[tuple[str, str]]:
    """Champion (xgboost, version 1) plus a 50 % canary (sklearn, version 2) behind HAProxy."""
    tmp = tmp_path_factory.mktemp("predict")
    models = save_iris_models(tmp / "models")
    settings = load_settings(
        state_dir=tmp / "state",
        serve_port=free_port(),
        predictor_ports=(free_port(), free_port()),
        proxy_stats_port=free_port(),
        prometheus_port=free_port(),
    )
    best = tmp / ".env.best_run"
    best.write_text(f"MODEL_NAME=iris\nMODEL_VERSION=1\nSTORAGE_URI={models['xgboost']}\n")
    stack = ServingStack(settings, best)
    try:
        stack.up()
        canary = Revision(version="2", storage_uri=str(models["sklearn"]), port=1)
        stack.canary(50, canary)
        yield f"http://127.0.0.1:{settings.serve_port}", settings.registered_model_name
    finally:
        stack.down()


def run_script(endpoint: tuple[str, str], **env) -> subprocess.CompletedProcess:
    base, name = endpoint
    full = {**os.environ, "ENDPOINT": base, "MODEL_NAME": name, **env}
    return subprocess.run(
        [str(SCRIPT)], env=full, capture_output=True, text=True, timeout=60, check=False
    )


def test_script_prints_prediction_and_serving_revision(endpoint):
    out = run_script(endpoint)
    assert out.returncode == 0, out.stderr
    assert "row 0: class=0 label=Iris-setosa" in out.stdout
    assert "row 1: class=2 label=Iris-virginica" in out.stdout
    assert "revision=champion model_version=1" in out.stdout or (
        "revision=canary model_version=2" in out.stdout
    )


def test_script_exits_non_zero_with_the_servers_message(endpoint, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(
        '{"inputs":[{"name":"sepal_length","shape":[1],"datatype":"FP32","data":[5.0]}]}'
    )
    out = run_script(endpoint, INPUT=str(bad))
    assert out.returncode == 1
    assert "HTTP 400" in out.stderr and "sepal_width" in out.stderr


def test_script_exits_non_zero_when_nothing_listens(endpoint):
    out = run_script(endpoint, ENDPOINT=f"http://127.0.0.1:{free_port()}")
    assert out.returncode == 1 and "cannot reach" in out.stderr


def test_notebook_shows_predictions_and_the_split(endpoint, tmp_path):
    import papermill

    base, name = endpoint
    out_nb = tmp_path / "serve.out.ipynb"
    nb = papermill.execute_notebook(
        str(REPO_ROOT / "inference_service" / "serve.ipynb"),
        str(out_nb),
        parameters={"endpoint": base, "model_name": name, "n_requests": 200},
        cwd=str(REPO_ROOT),
        kernel_name="python3",
        progress_bar=False,
    )
    texts = [
        str(o.get("data", {}).get("text/plain", "")) + str(o.get("text", ""))
        for cell in nb.cells
        for o in cell.get("outputs", [])
    ]
    joined = "\n".join(texts)
    assert "Iris-setosa" in joined and "canary" in joined and "champion" in joined
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, "the split plot was not drawn"
    assert Path(out_nb).is_file()
