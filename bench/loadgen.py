"""Drive an HTTP endpoint with one POST body: wrk (preferred) or a lean asyncio client.

On 2 cores a Python client takes about half the CPU from the server it measures
(KNOWN-TRAPS "Measuring"), so Debian's `wrk` with a Lua body script is used when it is
installed; the fallback is the project's own load generator (`inference_service.loadgen`,
a raw asyncio HTTP/1.1 keep-alive client), and every result names the generator that
produced it so figures from the two are never mixed silently.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from inference_service import loadgen

PERCENTILES = (1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9)

# wrk runs this per thread: the body comes from a file (it can be megabytes), and `done`
# prints one JSON line with the latency percentiles (microseconds) and error counters.
WRK_LUA = r"""
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
local pcts = {%(pcts)s}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCH_JSON {"requests":%%d,"duration_us":%%d,"status_errors":%%d,' ..
    '"socket_errors":%%d,"percentiles":[', summary.requests, summary.duration, e.status,
    e.connect + e.read + e.write + e.timeout))
  for i, p in ipairs(pcts) do
    if i > 1 then io.write(",") end
    io.write(string.format("[%%g,%%d]", p, latency:percentile(p)))
  end
  io.write(string.format('],"mean_us":%%g,"max_us":%%d}\n', latency.mean, latency.max))
end
"""


@dataclass
class LoadResult:
    generator: str
    connections: int
    requests: int
    duration_s: float
    errors: int
    percentiles_ms: list[tuple[float, float]] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    def pct(self, p: float) -> float:
        for q, ms in self.percentiles_ms:
            if q == p:
                return ms
        raise KeyError(f"percentile {p} not recorded")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["rps"] = round(self.rps, 2)
        d["p50_ms"] = round(self.pct(50), 3)
        d["p99_ms"] = round(self.pct(99), 3)
        return d


def wrk_path() -> str | None:
    return shutil.which("wrk")


def generator_name() -> str:
    """What `run_load` will use on this machine."""
    path = wrk_path()
    if not path:
        return "python-asyncio"
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=5)
        first = (out.stdout or out.stderr).strip().splitlines()[0]
        return first.split(" [")[0] if first else "wrk"
    except (OSError, subprocess.SubprocessError, IndexError):
        return "wrk"


def run_load(
    url: str, body_file: Path, *, connections: int, duration_s: float, work_dir: Path
) -> LoadResult:
    """POST the body to `url` for `duration_s` at `connections` concurrent connections."""
    if wrk_path():
        return run_wrk(url, body_file, connections, duration_s, work_dir)
    return run_python(url, body_file.read_bytes(), connections, duration_s)


def run_wrk(
    url: str, body_file: Path, connections: int, duration_s: float, work_dir: Path
) -> LoadResult:
    script = work_dir / "wrk_body.lua"
    script.write_text(WRK_LUA % {"pcts": ", ".join(str(p) for p in PERCENTILES)})
    # One wrk thread drives every connection: a second thread would only take CPU from
    # the server on a 2-core machine.
    argv = [
        wrk_path() or "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration_s))}s",
        "--timeout", "30s", "-s", str(script), url,
    ]  # fmt: skip
    env = {"BENCH_BODY": str(body_file), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=duration_s + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr.strip() or out.stdout}")
    data = json.loads(line.removeprefix("BENCH_JSON "))
    return LoadResult(
        generator=generator_name(),
        connections=connections,
        requests=int(data["requests"]),
        duration_s=data["duration_us"] / 1e6,
        errors=int(data["status_errors"]) + int(data["socket_errors"]),
        percentiles_ms=[(float(p), us / 1000.0) for p, us in data["percentiles"]],
    )


# --- fallback: the project's load generator (inference_service.loadgen) ---------------
def run_python(url: str, body: bytes, connections: int, duration_s: float) -> LoadResult:
    res = loadgen.load(
        url, body, requests=None, duration_s=duration_s, concurrency=connections, warmup=0,
        header=None,
    )  # fmt: skip
    arr = np.asarray(res.latencies_s) * 1000.0 if res.latencies_s else np.zeros(1)
    pcts = [(float(p), float(np.percentile(arr, p))) for p in PERCENTILES]
    errors = sum(n for status, n in res.statuses.items() if not 200 <= status < 300)
    return LoadResult("python-asyncio", connections, len(res.latencies_s), res.wall_s, errors, pcts)
