"""Faults and exposure with real processes: a crashed MLflow parent, a killed ETL, open ports.

* Exposure: with the local stack (S3 + MLflow) and serving (HAProxy + predictor + Prometheus)
  up, every socket our process trees listen on is loopback.
* Local stack: SIGKILL the MLflow parent started by `python -m ops.local_stack up`;
  its uvicorn child lives on holding the port; `down` must still end it (no orphans).
* ETL: SIGKILL the job (its whole process group: Python driver and Spark JVM)
  while it writes a new version: the previous manifest stays current and the
  half-written version is invisible to readers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from data_platform import lake, make_raw
from helper.object_store import free_s3_port
from helper.processes import free_port, port_is_free
from helper.settings import REPO_ROOT, Settings, load_settings
from inference_service.example_models import save_iris_models
from inference_service.serving_stack import ServingStack
from ops.exposure import local_report

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@dataclass
class Running:
    settings: Settings
    env: dict[str, str]
    serving: ServingStack


def stack_cli(env: dict[str, str], command: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ops.local_stack", command],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


@pytest.fixture(scope="module")
def running(tmp_path_factory) -> Iterator[Running]:
    """Local stack started through its CLI, plus serving (champion only), sharing a run dir."""
    tmp = tmp_path_factory.mktemp("faults")
    s3_port, mlflow_port = free_s3_port(), free_port()
    env = {
        **os.environ,
        "MLP_STATE_DIR": str(tmp / "state"),
        "MLP_S3_PORT": str(s3_port),
        "MLP_MLFLOW_PORT": str(mlflow_port),
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
        "MLP_AUTH_TOKEN": "",
    }
    for key in ("MLP_S3_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL"):
        env.pop(key, None)  # derive from the ports above
    settings = load_settings(
        state_dir=tmp / "state",
        s3_port=s3_port,
        mlflow_port=mlflow_port,
        serve_port=free_port(),
        predictor_ports=(free_port(), free_port()),
        proxy_stats_port=free_port(),
        prometheus_port=free_port(),
    )
    models = save_iris_models(tmp / "models")
    best = tmp / ".env.best_run"
    best.write_text(f"MODEL_NAME=iris\nMODEL_VERSION=1\nSTORAGE_URI={models['xgboost']}\n")
    serving = ServingStack(settings, best)
    up = stack_cli(env, "up")
    assert up.returncode == 0, up.stderr[-2000:]
    try:
        serving.up()
        yield Running(settings, env, serving)
    finally:
        serving.down()
        stack_cli(env, "down")


def test_every_socket_our_services_listen_on_is_loopback(running):
    report = local_report(running.settings)
    ports = running.settings.predictor_ports
    expected = {"s3", "mlflow", "haproxy", "prometheus", f"predictor-{ports[0]}"}
    assert expected <= set(report["services"]), report
    print(f"\nlisteners of our process trees: {report['listeners']}")
    s = running.settings
    for port in (s.s3_port, s.mlflow_port, s.serve_port, ports[0], s.proxy_stats_port,
                 s.prometheus_port):  # fmt: skip
        assert any(line.endswith(f":{port}") for line in report["listeners"]), (port, report)
    assert report["exposed"] == [], report["exposed"]


def test_sigkilled_mlflow_parent_then_down_leaves_no_orphans(running):
    run_dir = running.settings.run_dir
    parent = int((run_dir / "mlflow.pid").read_text())
    children = psutil.Process(parent).children(recursive=True)
    assert children, "expected MLflow to run its web server as a child process"
    os.kill(parent, signal.SIGKILL)
    time.sleep(1.0)
    assert any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
    assert not port_is_free(running.settings.mlflow_port)  # the orphan still holds the port

    down = stack_cli(running.env, "down")
    assert down.returncode == 0, down.stderr
    _, alive = psutil.wait_procs(children, timeout=15)
    alive = [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    assert alive == [], [p.cmdline() for p in alive]
    assert port_is_free(running.settings.mlflow_port)
    assert port_is_free(running.settings.s3_port)


# --- ETL killed mid-write ---------------------------------------------------------------
def _etl(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "data_platform.etl_job"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # the driver and its Spark JVM: one group to kill
    )


def _big_raw(path: Path, rows: int, copies: int) -> Path:
    spec = load_settings().dataset
    lines = [line.text for line in make_raw.synthetic_lines(rows, spec, seed=7)]
    return make_raw.write_lines(path, lines * copies)


def test_etl_killed_mid_write_keeps_the_previous_manifest_current(tmp_path):
    lake_uri = str(tmp_path / "lake")
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "MLP_LAKE_URI": lake_uri}
    first = _etl(env)
    out, _ = first.communicate(timeout=300)
    assert first.returncode == 0, out[-3000:]
    previous = lake.latest_manifest(lake_uri, "iris")

    raw = _big_raw(tmp_path / "big.data", rows=100_000, copies=2)  # 200,000 lines
    job = _etl({**env, "MLP_RAW_URI": str(raw)})
    root = Path(lake_uri, "iris")
    started = time.monotonic()
    writing = None
    while writing is None and time.monotonic() - started < 240 and job.poll() is None:
        new = [d for d in root.glob("*/*") if d.name != previous["version"]]
        if new and any(p.is_file() for p in new[0].rglob("*")):
            writing = new[0]
        time.sleep(0.05)
    assert writing is not None, "the job never started writing a new version"
    os.killpg(job.pid, signal.SIGKILL)
    job.wait(timeout=30)
    print(
        f"\nETL SIGKILLed {time.monotonic() - started:.1f}s after start, "
        f"{sum(1 for p in writing.rglob('*') if p.is_file())} files of the new version on disk"
    )

    assert not (writing / lake.MANIFEST).exists()
    assert lake.latest_manifest(lake_uri, "iris") == previous
    assert len(lake.list_versions(lake_uri, "iris")) == 1
    train = lake.read_split(previous, "train")
    assert len(train) == previous["train_rows"]
