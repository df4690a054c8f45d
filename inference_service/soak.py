"""Sustained load for a fixed duration, with the servers' memory before and after.

A soak test answers "does it keep working": throughput and p99 over a long run,
the error count (must be 0) and whether the serving processes' RSS grows. It
runs `loadgen.run_load` for the duration, so the figures come from the same
client as every other serving measurement here (a Python client: on 2 cores it
takes CPU from the server, so req/s is a lower bound; Debian's `wrk` measures
the server alone, see the hardening figures note).

Run: `python -m inference_service.soak [--duration 60] [--concurrency 8] [--url URL]`
(default URL: the local proxy; the bearer token is sent when `auth_token` is set).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import psutil

from helper.errors import run_cli
from helper.settings import Settings, get_settings
from inference_service.loadgen import LoadResult, run_load

DEFAULT_INPUT = Path(__file__).with_name("input.json")


def rss_mb(pids: Iterable[int]) -> dict[int, float]:
    """Resident memory of each live process, MiB (a vanished process is left out)."""
    out = {}
    for pid in pids:
        try:
            out[pid] = round(psutil.Process(pid).memory_info().rss / 2**20, 1)
        except psutil.NoSuchProcess:
            continue
    return out


async def run_soak(
    url: str,
    body: bytes,
    *,
    duration_s: float,
    concurrency: int = 8,
    extra_headers: dict[str, str] | None = None,
) -> LoadResult:
    """POSTs from `concurrency` connections until `duration_s` has passed, after a warm-up."""
    if duration_s <= 0:
        raise ValueError("duration_s must be positive")
    return await run_load(
        url,
        body,
        requests=None,
        duration_s=duration_s,
        concurrency=concurrency,
        warmup=20,
        extra_headers=extra_headers,
    )


def soak(
    url: str,
    body: bytes,
    *,
    duration_s: float,
    concurrency: int = 8,
    pids: Sequence[int] = (),
    extra_headers: dict[str, str] | None = None,
) -> dict:
    """Run the soak and report throughput, latency, errors and RSS before/after per pid."""
    before = rss_mb(pids)
    result = asyncio.run(
        run_soak(
            url, body, duration_s=duration_s, concurrency=concurrency, extra_headers=extra_headers
        )
    )
    after = rss_mb(pids)
    errors = sum(n for status, n in result.statuses.items() if status != 200)
    return {
        **result.summary(),
        "duration_s": round(result.wall_s, 1),
        "concurrency": concurrency,
        "errors": errors,
        "rss_mb_before": before,
        "rss_mb_after": after,
    }


def auth_headers(settings: Settings) -> dict[str, str]:
    if settings.auth_token and settings.auth_token.get_secret_value():
        return {"authorization": f"Bearer {settings.auth_token.get_secret_value()}"}
    return {}


def main(argv: Sequence[str] | None = None) -> int:
    settings = get_settings()
    p = argparse.ArgumentParser(description="Sustained load on the local endpoint")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    p.add_argument("--concurrency", type=int, default=8)
    default_url = (
        f"http://127.0.0.1:{settings.serve_port}/v2/models/{settings.registered_model_name}/infer"
    )
    p.add_argument("--url", default=default_url)
    p.add_argument("--input", type=Path, default=DEFAULT_INPUT, help="request body (JSON)")
    p.add_argument("--pid", type=int, action="append", default=[], help="processes to watch")
    args = p.parse_args(argv)
    report = soak(
        args.url,
        args.input.read_bytes(),
        duration_s=args.duration,
        concurrency=args.concurrency,
        pids=args.pid,
        extra_headers=auth_headers(settings),
    )
    print(json.dumps(report, indent=2))
    return 0 if report["errors"] == 0 else 1


if __name__ == "__main__":
    run_cli(main)
