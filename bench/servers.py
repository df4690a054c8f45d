"""Start and stop the serving configurations the bench compares, each on free ports.

All processes go through `helper.processes.ManagedProcess` (own session, pid file, health
check, whole-group stop), with pid files and logs under the run's work directory, so a
bench run never touches the developer's own serving state and leaves nothing behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from helper.processes import ManagedProcess, free_port, http_ok
from helper.settings import Settings, load_settings

# KNOWN-TRAPS: MLServer 1.7.1 conflicts with kserve >= 0.17 and needs uvloop 0.21 to start.
# xgboost-cpu is the same 3.2.0 build without the 470 MB NCCL dependency.
MLSERVER_PINS = (
    "mlserver==1.7.1",
    "mlserver-mlflow==1.7.1",
    "mlflow==3.17.2",
    "xgboost-cpu==3.2.0",
    "pandas==2.3.3",
    "uvloop==0.21.0",
)


@dataclass
class Running:
    """A started configuration: where to send requests and which processes serve them."""

    name: str
    url: str
    processes: list[ManagedProcess]
    notes: dict = field(default_factory=dict)

    def pids(self) -> list[int]:
        return [pid for p in self.processes if (pid := p.pid()) is not None]

    def psutil_procs(self) -> list[psutil.Process]:
        """Every process serving this configuration (the groups' children included)."""
        out = []
        for pid in self.pids():
            try:
                root = psutil.Process(pid)
                out += [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
        return out

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()


def _managed(name: str, argv: list[str], work: Path, port: int, ready_url: str, env=None):
    return ManagedProcess(
        name=name,
        argv=argv,
        run_dir=work / "run",
        log_dir=work / "logs",
        port=port,
        health=lambda: http_ok(ready_url),
        env=env,
    )


def start_predictor(model_dir: Path, model_name: str, work: Path) -> Running:
    """Our predictor with the MLflow-pyfunc twin of the same model in the same process:
    `<name>` is the native path, `<name>-pyfunc` what a plain KServe custom predictor does."""
    port = free_port()
    argv = [
        sys.executable, "-m", "inference_service.server", "--model_name", model_name,
        "--model_dir", str(model_dir), "--http_port", str(port), "--host", "127.0.0.1",
        "--model_version", "1", "--pyfunc_twin",
    ]  # fmt: skip
    ready = f"http://127.0.0.1:{port}/v2/models/{model_name}-pyfunc/ready"
    proc = _managed("predictor", argv, work, port, ready)
    proc.start(timeout=180)
    return Running("predictor", f"http://127.0.0.1:{port}", [proc])


def ensure_mlserver_env(settings: Settings, log) -> Path:
    """`<state_dir>/bench-envs/mlserver` with MLSERVER_PINS (created once, then cached)."""
    env_dir = settings.state_dir / "bench-envs" / "mlserver"
    python = env_dir / "bin" / "python"
    stamp = env_dir / ".bench-pins"
    want = "\n".join(MLSERVER_PINS)
    if python.exists() and stamp.is_file() and stamp.read_text() == want:
        return env_dir
    log(f"creating the MLServer environment under {env_dir} (one time)")
    uv = _uv()
    # --clear: a half-made environment from an interrupted run is rebuilt, not reused
    subprocess.run([uv, "venv", "--quiet", "--clear", "--python", "3.11", str(env_dir)], check=True)
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--python", str(python), *MLSERVER_PINS],
        check=True,
        timeout=1200,
    )
    stamp.write_text(want)
    return env_dir


def _uv() -> str:
    import shutil

    found = shutil.which("uv")
    if not found:
        raise RuntimeError("uv: not on PATH; the MLServer environment is created with uv")
    return found


def start_mlserver(env_dir: Path, model_dir: Path, model_name: str, work: Path) -> Running:
    """MLServer's MLflow runtime (KServe's built-in MLflow runtime), defaults otherwise."""
    repo = work / "mlserver-repo"
    (repo / model_name).mkdir(parents=True, exist_ok=True)
    port = free_port()
    server_settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "debug": False,
    }
    model_settings = {
        "name": model_name,
        "implementation": "mlserver_mlflow.MLflowRuntime",
        "parameters": {"uri": str(model_dir)},
    }
    (repo / "settings.json").write_text(json.dumps(server_settings))
    (repo / model_name / "model-settings.json").write_text(json.dumps(model_settings))
    argv = [str(env_dir / "bin" / "mlserver"), "start", str(repo)]
    ready = f"http://127.0.0.1:{port}/v2/models/{model_name}/ready"
    proc = _managed("mlserver", argv, work, port, ready)
    proc.start(timeout=240)
    return Running("mlserver", f"http://127.0.0.1:{port}", [proc], {"settings": server_settings})


def start_canary(model_dir: Path, model_name: str, work: Path, percent: int) -> Running:
    """The local canary: champion + canary predictors (same model, versions 1 and 2) behind
    HAProxy at `percent` %, with the local Prometheus scraping them every second — the
    platform's own serving stack as `serve:up` runs it, on private ports and state."""
    from inference_service import prometheus_local
    from inference_service.serving_stack import ServingStack
    from inference_service.state import Revision, ServingState, save_state, state_file

    settings = load_settings(
        state_dir=work / "canary-state",
        serve_port=free_port(),
        predictor_ports=(free_port(), free_port()),
        proxy_stats_port=free_port(),
        prometheus_port=free_port(),
        auth_token=None,
    )
    ports = settings.predictor_ports
    state = ServingState(
        model_name=model_name,
        champion=Revision(version="1", storage_uri=str(model_dir), port=ports[0]),
        canary=Revision(version="2", storage_uri=str(model_dir), port=ports[1]),
        canary_percent=percent,
    )
    save_state(state_file(settings), state)
    stack = ServingStack(settings)
    procs = [stack.predictor(model_name, state.champion), stack.predictor(model_name, state.canary)]
    # Both predictors load at the same time (start-up is mostly imports); the proxy last.
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(p.start, 180) for p in procs]
    errors = [f.exception() for f in futures if f.exception() is not None]
    started = list(procs)
    try:
        if errors:
            raise errors[0]
        proxy = stack.proxy()
        proxy.start(state)
        started.append(proxy.process())
        for port in ports:
            stack.wait_in_rotation(port)
        prometheus_local.start(settings)
        started.append(prometheus_local.process(settings))
    except Exception:
        for p in reversed(started):
            p.stop()
        raise
    url = f"http://127.0.0.1:{settings.serve_port}"
    return Running("canary", url, started, {"canary_percent": percent})
