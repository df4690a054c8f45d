"""A small async load generator: N POSTs at a given concurrency, latencies back.

Used by the serving measurements here and by the later `task bench`. It is a
Python client, so on a 2-core machine it competes with the server for CPU
(KNOWN-TRAPS: a `requests` loop eats about half of it); aiohttp on one pooled
connection per worker is the cheapest Python client available here, and the
absolute req/s it reports are a lower bound on what the server can do.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp


@dataclass
class LoadResult:
    latencies_s: list[float]
    wall_s: float
    statuses: Counter = field(default_factory=Counter)
    header_values: Counter = field(default_factory=Counter)

    @property
    def throughput(self) -> float:
        return len(self.latencies_s) / self.wall_s if self.wall_s else 0.0

    def percentile_ms(self, q: float) -> float:
        data = sorted(self.latencies_s)
        if not data:
            return float("nan")
        idx = min(len(data) - 1, max(0, round(q / 100 * len(data)) - 1))
        return data[idx] * 1000

    def summary(self) -> dict:
        return {
            "requests": len(self.latencies_s),
            "req_per_s": round(self.throughput, 1),
            "p50_ms": round(self.percentile_ms(50), 3),
            "p99_ms": round(self.percentile_ms(99), 3),
            "mean_ms": round(statistics.fmean(self.latencies_s) * 1000, 3)
            if self.latencies_s
            else None,
            "statuses": dict(self.statuses),
            "header_values": dict(self.header_values),
        }


async def run_load(
    url: str,
    body: bytes,
    *,
    requests: int = 1000,
    concurrency: int = 1,
    warmup: int = 20,
    header: str | None = "x-model-version",
    content_type: str = "application/json",
    extra_headers: dict[str, str] | None = None,
) -> LoadResult:
    """POST `body` to `url` `requests` times from `concurrency` workers; time each request."""
    if requests < 1 or concurrency < 1:
        raise ValueError("requests and concurrency must be at least 1")
    headers = {"content-type": content_type, **(extra_headers or {})}
    result = LoadResult([], 0.0)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(warmup):
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
        remaining = requests

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                t0 = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    result.latencies_s.append(time.perf_counter() - t0)
                    result.statuses[resp.status] += 1
                    if header:
                        result.header_values[resp.headers.get(header, "")] += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.wall_s = time.perf_counter() - start
    return result


def load(url: str, body: bytes, **kwargs) -> LoadResult:
    """Synchronous wrapper for scripts and notebooks."""
    return asyncio.run(run_load(url, body, **kwargs))
