"""The in-cluster MLflow's MLFLOW_SERVER_ALLOWED_HOSTS, tried on a real local `mlflow server`.

MLflow 3 rejects requests whose Host header matches none of the patterns (fnmatch; a set
value replaces the defaults). Operators reach the cluster server through `kubectl
port-forward`, whose clients send Host: localhost:<port>, 127.0.0.1:<port> or [::1]:<port>;
pods send the Service names. The value is read from the rendered Deployment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from helper import validate
from helper.processes import free_port
from helper.settings import REPO_ROOT

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def _allowed_hosts() -> str:
    objs = validate.render(REPO_ROOT / "ml_platform/k8s/overlays/prod")
    dep = next(o for o in objs if o["kind"] == "Deployment")
    env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
    return next(e["value"] for e in env if e["name"] == "MLFLOW_SERVER_ALLOWED_HOSTS")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mlflow-hosts")
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_SERVER_ALLOWED_HOSTS": _allowed_hosts(),
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    cmd = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{tmp}/mlflow.db",
        "--artifacts-destination",
        str(tmp / "a"),
    ]
    log = open(tmp / "server.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        else:
            pytest.fail(f"mlflow server did not start: {(tmp / 'server.log').read_text()[-2000:]}")
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()


def _status(port: int, host: str) -> int:
    url = f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=1"
    return requests.get(url, headers={"Host": host}, timeout=30).status_code


@pytest.mark.parametrize(
    "host",
    [
        "localhost:15000",  # kubectl port-forward svc/mlflow 15000:5000, then http://localhost:15000
        "127.0.0.1:15000",
        "[::1]:15000",
        "mlflow.ml-platform.svc.cluster.local:5000",  # the RayJob's MLFLOW_TRACKING_URI
        "mlflow:5000",
    ],
)
def test_port_forward_and_service_hosts_are_answered(server, host):
    assert _status(server, host) == 200


@pytest.mark.parametrize("host", ["evil.example:5000", "localhost.evil.example:5000"])
def test_other_hosts_are_refused(server, host):
    assert _status(server, host) == 403
