"""Serving with a bearer token configured, under sustained load and with a canary SIGKILLed.

One local stack (HAProxy + champion + canary, real processes) with `auth_token`
set at run time (a random value, never a literal in the repo). Checks: probes
stay open, inference needs the token on the proxy AND on the predictor, the
prediction script sends MLP_AUTH_TOKEN, a short soak has zero errors, and a
canary killed with SIGKILL mid-load loses no request and gets no more traffic.
The token-off path is what every other serving test (and the fuzz suite) runs.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from helper.processes import free_port
from helper.settings import REPO_ROOT, load_settings
from inference_service.example_models import save_iris_models
from inference_service.loadgen import load
from inference_service.serving_stack import ServingStack
from inference_service.soak import soak
from inference_service.state import Revision

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SOAK_SECONDS = float(os.environ.get("HARDENING_SOAK_SECONDS", "10"))
BODY = (REPO_ROOT / "inference_service" / "input.json").read_bytes()


@dataclass
class Secured:
    stack: ServingStack
    token: str
    proxy: str
    name: str
    models: dict[str, Path]

    def url(self, port: int | None = None) -> str:
        return f"http://127.0.0.1:{port}" if port else self.proxy

    def infer(self, port: int | None = None) -> str:
        return f"{self.url(port)}/v2/models/{self.name}/infer"

    @property
    def auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    def pid(self, role: str) -> int:
        st = self.stack.state()
        port = getattr(st, role).port
        return self.stack.status()["processes"][f"predictor-{port}"]


@pytest.fixture(scope="module")
def secured(tmp_path_factory) -> Iterator[Secured]:
    tmp = tmp_path_factory.mktemp("secured")
    models = save_iris_models(tmp / "models")
    token = secrets.token_urlsafe(24)
    settings = load_settings(
        state_dir=tmp / "state",
        serve_port=free_port(),
        predictor_ports=(free_port(), free_port()),
        proxy_stats_port=free_port(),
        prometheus_port=free_port(),
        auth_token=token,
    )
    best = tmp / ".env.best_run"
    best.write_text(f"MODEL_NAME=iris\nMODEL_VERSION=1\nSTORAGE_URI={models['xgboost']}\n")
    stack = ServingStack(settings, best)
    try:
        stack.up()
        stack.canary(50, Revision(version="2", storage_uri=str(models["xgboost"]), port=1))
        s = Secured(
            stack, token, f"http://127.0.0.1:{settings.serve_port}", "iris-classifier", models
        )
        wait_for_both(s)
        yield s
    finally:
        stack.down()


def post(url: str, headers: dict[str, str] | None = None) -> requests.Response:
    hdrs = {"content-type": "application/json", **(headers or {})}
    return requests.post(url, data=BODY, headers=hdrs, timeout=30)


def wait_for_both(s: Secured, timeout: float = 20.0) -> None:
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while seen != {"1", "2"} and time.monotonic() < deadline:
        seen.add(post(s.infer(), s.auth).headers.get("x-model-version", ""))
        time.sleep(0.05)
    assert seen >= {"1", "2"}, seen


def test_probes_stay_open_without_a_token(secured):
    champ = secured.stack.state().champion.port
    for base in (secured.url(), secured.url(champ)):
        r = requests.get(f"{base}/v2/models/{secured.name}/ready", timeout=5)
        assert r.status_code == 200, (base, r.text)
    assert requests.get(f"{secured.url(champ)}/v2/health/ready", timeout=5).status_code == 200
    assert requests.get(f"{secured.url(champ)}/metrics", timeout=5).status_code == 200
    stats = secured.stack.settings.proxy_stats_port
    assert requests.get(f"http://127.0.0.1:{stats}/metrics", timeout=5).status_code == 200


@pytest.mark.parametrize("where", ["proxy", "predictor"])
def test_inference_requires_the_bearer_token(secured, where):
    port = None if where == "proxy" else secured.stack.state().champion.port
    url = secured.infer(port)
    cases = {
        "missing bearer token": {},
        "invalid bearer token": {"authorization": f"Bearer {secured.token}x"},
        "malformed Authorization header": {"authorization": f"Basic {secured.token}"},
    }
    for message, headers in cases.items():
        r = post(url, headers)
        assert r.status_code == 401, (where, message, r.text)
        assert message in r.json()["error"] and r.headers["www-authenticate"] == "Bearer"
    ok = post(url, secured.auth)
    assert ok.status_code == 200, ok.text
    assert [o["data"] for o in ok.json()["outputs"] if o["name"] == "predict"] == [[0, 2]]
    v1 = requests.post(
        f"{secured.url(port)}/v1/models/{secured.name}:predict",
        json={"instances": [[5.1, 3.5, 1.4, 0.2]]},
        timeout=10,
    )
    assert v1.status_code == 401


def test_prediction_script_sends_MLP_AUTH_TOKEN(secured):
    base = {**os.environ, "ENDPOINT": secured.url(), "MODEL_NAME": secured.name}
    base.pop("MLP_AUTH_TOKEN", None)
    script = [str(REPO_ROOT / "inference_service" / "prediction")]
    run = {"capture_output": True, "text": True, "timeout": 60, "check": False}
    without = subprocess.run(script, env=base, **run)
    assert without.returncode == 1 and "HTTP 401" in without.stderr
    assert "missing bearer token" in without.stderr
    with_token = subprocess.run(script, env={**base, "MLP_AUTH_TOKEN": secured.token}, **run)
    assert with_token.returncode == 0, with_token.stderr
    assert "row 0: class=0 label=Iris-setosa" in with_token.stdout


def test_sustained_load_has_zero_errors_and_bounded_rss(secured):
    pids = [secured.pid("champion"), secured.pid("canary"), secured.stack.proxy().process().pid()]
    report = soak(
        secured.infer(),
        BODY,
        duration_s=SOAK_SECONDS,
        concurrency=8,
        pids=pids,
        extra_headers=secured.auth,
    )
    print(f"\nsoak {SOAK_SECONDS:.0f}s c=8 through HAProxy (token on): {report}")
    assert report["errors"] == 0 and report["statuses"] == {200: report["requests"]}
    assert report["requests"] >= 20 * SOAK_SECONDS  # a very low floor: it must keep serving
    assert set(report["header_values"]) == {"1", "2"}
    for pid, before in report["rss_mb_before"].items():
        assert report["rss_mb_after"][pid] - before < 200, report


def test_canary_sigkilled_under_load_loses_no_request_and_gets_no_traffic(secured):
    wait_for_both(secured)
    canary_pid = secured.pid("canary")
    n = 3000
    outcome: dict = {}

    def drive() -> None:
        try:
            outcome["result"] = load(
                secured.infer(), BODY, requests=n, concurrency=8, warmup=0,
                extra_headers=secured.auth,
            )  # fmt: skip
        except Exception as exc:  # a lost request surfaces here as a client error
            outcome["error"] = exc

    t = threading.Thread(target=drive)
    t.start()
    time.sleep(1.0)
    os.kill(canary_pid, signal.SIGKILL)
    t.join(timeout=120)
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    answered = sum(result.statuses.values())
    print(
        f"\ncanary SIGKILL under load: sent {n}, answered {answered}, "
        f"statuses {dict(result.statuses)}, by version {dict(result.header_values)}"
    )
    assert answered == n and result.statuses == Counter({200: n})
    assert result.header_values["2"] > 0  # the canary did answer before it died
    time.sleep(2.5)  # HAProxy's health check (every 1 s, down after 2 fails) has noticed
    after = load(secured.infer(), BODY, requests=300, concurrency=4, warmup=0,
                 extra_headers=secured.auth)  # fmt: skip
    assert after.statuses == Counter({200: 300})
    assert after.header_values == Counter({"1": 300})
