"""Fast checks of the bench's own logic: the pyarrow ETL baseline's reject rules, the
goal arithmetic, and the Python fallback load generator against a real local server."""

from __future__ import annotations

import collections
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from bench import goals, loadgen
from bench.etl_baseline import drop_header, parse, read_lines, run_baseline, split_mask
from data_platform.make_raw import synthetic_lines, write_lines
from helper.settings import load_settings

pytestmark = pytest.mark.bench


@pytest.fixture(scope="module")
def spec():
    return load_settings().dataset


def test_baseline_gives_every_line_the_reason_make_raw_intended(spec, tmp_path: Path):
    raw = synthetic_lines(3000, spec, seed=5, malformed_fraction=0.3)
    path = write_lines(tmp_path / "raw.data", [r.text for r in raw])
    got = parse(drop_header(read_lines(path), spec), spec)["reason"].to_pylist()
    assert got == [r.expect for r in raw]
    assert len(set(got) - {None}) == 7  # every reject kind was exercised


def test_baseline_keeps_blank_lines_bom_and_crlf(spec, tmp_path: Path):
    lines = ["5.1,3.5,1.4,0.2,Iris-setosa", "", "6.0,2.2,5.0,1.5,Iris-virginica"]
    path = write_lines(tmp_path / "raw.data", lines, bom=True, crlf=True)
    reasons = parse(drop_header(read_lines(path), spec), spec)["reason"].to_pylist()
    assert reasons == [None, "blank_line", None]


def test_baseline_split_is_stratified_and_deterministic(spec, tmp_path: Path):
    raw = synthetic_lines(2000, spec, seed=1)
    path = write_lines(tmp_path / "raw.data", [r.text for r in raw])
    a = run_baseline(path, tmp_path / "a", spec, seed=42, test_fraction=0.2)
    b = run_baseline(path, tmp_path / "b", spec, seed=42, test_fraction=0.2)
    assert a["train_rows"] + a["test_rows"] == a["rows_out"] == 2000
    assert (a["train_rows"], a["test_rows"]) == (b["train_rows"], b["test_rows"])
    rng = np.random.default_rng(0)
    label = np.array([0, 1] * 50, dtype=np.int32)
    unique = [rng.normal(size=100) for _ in range(4)]
    mask = split_mask(unique, label, seed=0, fraction=0.2)
    assert [int(mask[label == c].sum()) for c in (0, 1)] == [10, 10]  # exact per class
    same = [np.full(100, 1.5) for _ in range(4)]  # identical rows share rank 1: all test
    assert split_mask(same, label, seed=0, fraction=0.2).all()


def _case(rps, p50, p99, rows=1):
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "rows_per_s": rps * rows}


def test_goals_compare_the_measured_numbers():
    parts = {
        "serving": {
            "configs": {
                "native": {"cases": {"single_c1": _case(1000, 1, 2),
                                     "single_c8": _case(1000, 8, 16),
                                     "batch_10000": _case(20, 40, 60, 10_000)}},
                "mlserver": {"cases": {"single_c1": _case(400, 2, 5)}},
                "canary": {"cases": {"single_c1": _case(950, 1.2, 2.5),
                                     "single_c8": _case(800, 9, 20)}},
            }
        }
    }  # fmt: skip
    result = {g["goal"]: g for g in goals.evaluate(parts)}
    vs = result["serving single-row c=1 vs MLServer"]
    assert vs["met"] is False and vs["ratio"] == pytest.approx(2.5)
    canary = result["canary routing cost (10 %, single-row c=1 and c=8)"]
    assert canary["cost"] == pytest.approx(0.05)
    assert canary["costs"]["single_c8"] == pytest.approx(0.2)
    assert canary["met"] is False  # c=1 is within 10 %, c=8 is not
    assert result["10,000-row batch end to end (native)"]["met"] is True
    assert result["pipeline from a stopped stack to first prediction"]["met"] is None


def test_tuning_goal_uses_time_to_reach():
    parts = {
        "tuning": {
            "searches": {
                "original": {"best_accuracy": 0.95, "wall_s": 90.0},
                "ours": {"best_accuracy": 0.96, "time_to_reach_original_best_s": 20.0},
            }
        }
    }
    goal = goals.tuning_speed(parts)
    assert goal["met"] is True and goal["share"] == pytest.approx(20 / 90)


def test_first_trial_goal_is_the_same_run_ratio():
    def parts(fast, base):
        ab = {"fast_start": {"first_trial_start_s": fast},
              "ray_defaults": {"first_trial_start_s": base}, "ratio": base / fast}  # fmt: skip
        return {"tuning": {"first_trial": ab}}

    assert goals.first_trial(parts(2.5, 10.0))["met"] is True
    assert goals.first_trial(parts(6.0, 10.0))["met"] is False
    assert goals.first_trial({})["met"] is None


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: collections.Counter = collections.Counter()

    def do_POST(self):  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Echo.seen[len(body)] += 1
        reply = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def test_python_fallback_load_generator_counts_real_requests(tmp_path: Path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v2/models/x/infer"
        result = loadgen.run_python(url, b'{"inputs": []}', connections=2, duration_s=0.5)
    finally:
        server.shutdown()
        server.server_close()
    assert result.generator == "python-asyncio" and result.errors == 0
    assert result.requests == _Echo.seen[len(b'{"inputs": []}')] > 0
    assert 0 < result.pct(50) <= result.pct(99)
