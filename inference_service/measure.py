"""Measure the serving targets on this machine (figures for the note, not timed tests).

`python -m inference_service.measure --model_dir DIR [--requests N]` starts one
predictor that serves the model natively and, as `<name>-pyfunc`, through
MLflow's pyfunc (same process, same model), plus HAProxy in front of it (the
local traffic splitter, `inference_service.proxy`), and prints JSON: single-row v2
req/s and p50/p99 for both paths, the proxy's added p50 against calling the
predictor directly, and a 10,000-row batch.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from helper.errors import run_cli
from helper.processes import ManagedProcess, free_port, http_ok
from helper.settings import load_settings
from inference_service.example_models import FEATURES
from inference_service.loadgen import load
from inference_service.proxy import Proxy
from inference_service.state import Revision, ServingState


def single_row_body(features: Sequence[str] = FEATURES) -> bytes:
    """The seed project's request form: one named FP32 input per feature, pandas hint."""
    row = [5.1, 3.5, 1.4, 0.2]
    inputs = [
        {"name": f, "shape": [1], "datatype": "FP32", "data": [v]}
        for f, v in zip(features, row, strict=False)
    ]
    return json.dumps({"inputs": inputs, "parameters": {"content_type": "pd"}}).encode()


def batch_body(rows: int, n_features: int = 4, seed: int = 0) -> bytes:
    data = np.random.default_rng(seed).uniform(0.1, 8.0, size=(rows, n_features)).round(2)
    tensor = {"name": "input-0", "shape": [rows, n_features], "datatype": "FP32"}
    tensor["data"] = data.reshape(-1).tolist()
    return json.dumps({"inputs": [tensor]}).encode()


def proxy_overhead(direct: str, via_gw: str, body: bytes, rounds: int, per_round: int) -> dict:
    """Alternate direct and proxied runs so background load hits both alike; median of p50s."""
    p50_direct, p50_gw = [], []
    for _ in range(rounds):
        p50_direct.append(load(direct, body, requests=per_round).percentile_ms(50))
        p50_gw.append(load(via_gw, body, requests=per_round).percentile_ms(50))
    added = [g - d for g, d in zip(p50_gw, p50_direct, strict=True)]
    return {
        "direct_p50_ms": [round(v, 3) for v in p50_direct],
        "proxy_p50_ms": [round(v, 3) for v in p50_gw],
        "added_p50_ms_median": round(sorted(added)[len(added) // 2], 3),
    }


def measure(model_dir: Path, requests: int = 3000, name: str = "bench", rounds: int = 5) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="serve-measure-"))
    port, gw_port = free_port(), free_port()
    env = {"MLP_STATE_DIR": str(tmp)}
    predictor = ManagedProcess(
        name="measure-predictor",
        argv=[sys.executable, "-m", "inference_service.server", "--model_name", name,
              "--model_dir", str(model_dir), "--http_port", str(port), "--pyfunc_twin",
              "--model_version", "1"],  # fmt: skip
        run_dir=tmp, log_dir=tmp, port=port, env=env,
        health=lambda: http_ok(f"http://127.0.0.1:{port}/v2/models/{name}/ready"),
    )  # fmt: skip
    settings = load_settings(
        state_dir=tmp,
        serve_port=gw_port,
        predictor_ports=(port, free_port()),
        proxy_stats_port=free_port(),
        auth_token=None,
    )
    state = ServingState(
        model_name=name, champion=Revision(version="1", storage_uri=str(model_dir), port=port)
    )
    proxy = Proxy(settings)
    out: dict = {}
    try:
        predictor.start(timeout=120)
        proxy.start(state)
        body = single_row_body()
        direct = f"http://127.0.0.1:{port}/v2/models/{name}/infer"
        via_gw = f"http://127.0.0.1:{gw_port}/v2/models/{name}/infer"
        pyfunc = f"http://127.0.0.1:{port}/v2/models/{name}-pyfunc/infer"
        out["native_single_row"] = load(direct, body, requests=requests).summary()
        out["pyfunc_single_row"] = load(pyfunc, body, requests=max(200, requests // 3)).summary()
        big = batch_body(10_000)
        out["native_batch_10000"] = load(direct, big, requests=30, warmup=3).summary()
        n, p = out["native_single_row"], out["pyfunc_single_row"]
        out["ratio_native_over_pyfunc"] = round(n["req_per_s"] / p["req_per_s"], 2)
        out["proxy"] = proxy_overhead(direct, via_gw, body, rounds, requests // rounds)
    finally:
        proxy.stop()
        predictor.stop()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model_dir", type=Path, required=True)
    p.add_argument("--requests", type=int, default=3000)
    args = p.parse_args(argv)
    print(json.dumps(measure(args.model_dir, args.requests), indent=2))
    return 0


if __name__ == "__main__":
    run_cli(main)
