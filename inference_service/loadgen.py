"""The project's one load generator: N POSTs (or a duration) at a concurrency, latencies back.

Used by the serving measurements (`measure.py`), the soak (`soak.py`), the promotion's
held-out replay (`promotion/analysis.py`, paced with `rate`) and `task bench`'s fallback
when `wrk` is not installed (`bench/loadgen.py`).

Why a raw asyncio HTTP/1.1 keep-alive client and not an HTTP library: on a 2-core machine
the client takes CPU from the server it measures (KNOWN-TRAPS: a `requests` loop eats
about half of it), so the cheapest client is the one that distorts least. Measured on
2026-12-03 against one local predictor (iris, single-row v2, 5 s per round, three
interleaved rounds, all niced alike, machine shared): this client made 2.1x the req/s of
`httpx.AsyncClient` at c=1 and 1.6x at c=8 (806 vs 376, 875 vs 548; bench/README.md,
"Load generator"). It stays the load generator; httpx is the client for single calls.
One connection per worker, the request bytes built once, only the status line and the
headers the caller names parsed. The absolute req/s are a lower bound on the server's.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# What a failed exchange can raise: the connection (refused, reset, closed mid-answer),
# a garbled answer, or the per-request timeout.
EXCHANGE_ERRORS = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)


@dataclass
class LoadResult:
    """Latencies of the answered requests; statuses (0 = no answer) and the values of one
    response header (for no answer: the reason) over every request."""

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


@dataclass(frozen=True)
class Target:
    """Where to connect and the request bytes for each body (built once, sent many times)."""

    host: str
    port: int
    tls: bool
    requests: tuple[bytes, ...]

    @classmethod
    def build(cls, url: str, bodies: Sequence[bytes], headers: dict[str, str]) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"url: only http(s) is supported, not {url!r}")
        tls = parts.scheme == "https"
        host, port = parts.hostname or "127.0.0.1", parts.port or (443 if tls else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        raw = tuple(
            ("\r\n".join([*lines, f"Content-Length: {len(b)}"]) + "\r\n\r\n").encode() + b
            for b in bodies
        )
        return cls(host, port, tls, raw)


class _Connection:
    """One keep-alive connection, opened on first use and again after a failure."""

    def __init__(self, target: Target, header: str | None):
        self.target = target
        self.header = header.lower().encode() if header else None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def exchange(self, request: bytes) -> tuple[int, str]:
        if self.writer is None:
            tls = ssl.create_default_context() if self.target.tls else None
            self.reader, self.writer = await asyncio.open_connection(
                self.target.host, self.target.port, ssl=tls
            )
        self.writer.write(request)
        status, value, keep = await _read_response(self.reader, self.header)
        if not keep:
            self.close()
        return status, value

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _read_response(
    reader: asyncio.StreamReader, header: bytes | None
) -> tuple[int, str, bool]:
    """(status, the named header's value or "", whether the connection stays open)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    status = int(lines[0].split(None, 2)[1])
    length, chunked, keep, value = 0, False, True, ""
    for line in lines[1:]:
        name, _, raw = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(raw)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in raw.lower()
        elif name == b"connection":
            keep = b"close" not in raw.lower()
        if name == header:
            value = raw.strip().decode("latin-1")
    if chunked:
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            await reader.readexactly(size + 2)
        await reader.readuntil(b"\r\n")  # the empty trailer
    else:
        await reader.readexactly(length)
    return status, value, keep


async def drive(
    target: Target,
    *,
    concurrency: int,
    requests: int | None = None,
    duration_s: float | None = None,
    rate: float | None = None,
    header: str | None = None,
    timeout: float = 30.0,
) -> LoadResult:
    """Send `target.requests` round-robin from `concurrency` connections until `requests`
    were sent or `duration_s` has passed; with `rate`, request i starts at i / rate s."""
    result = LoadResult([], 0.0)
    sent = 0
    start = time.perf_counter()
    deadline = start + duration_s if duration_s is not None else None
    bodies = target.requests

    async def worker() -> None:
        nonlocal sent
        conn = _Connection(target, header)
        try:
            while (requests is None or sent < requests) and (
                deadline is None or time.perf_counter() < deadline
            ):
                i, sent = sent, sent + 1
                if rate and (delay := start + i / rate - time.perf_counter()) > 0:
                    await asyncio.sleep(delay)
                t0 = time.perf_counter()
                try:
                    async with asyncio.timeout(timeout):
                        status, value = await conn.exchange(bodies[i % len(bodies)])
                except (*EXCHANGE_ERRORS, TimeoutError) as exc:
                    conn.close()
                    status, value = 0, f"no answer ({type(exc).__name__}: {exc})"[:200]
                else:
                    result.latencies_s.append(time.perf_counter() - t0)
                result.statuses[status] += 1
                if header:
                    result.header_values[value] += 1
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.wall_s = time.perf_counter() - start
    return result


async def run_load(
    url: str,
    body: bytes | Sequence[bytes],
    *,
    requests: int | None = 1000,
    concurrency: int = 1,
    warmup: int = 20,
    header: str | None = "x-model-version",
    content_type: str = "application/json",
    extra_headers: dict[str, str] | None = None,
    duration_s: float | None = None,
    rate: float | None = None,
    timeout: float = 30.0,
) -> LoadResult:
    """POST `body` (or each of several bodies in turn) to `url` `requests` times, or for
    `duration_s`, from `concurrency` connections after `warmup` untimed requests."""
    if (requests is not None and requests < 1) or concurrency < 1:
        raise ValueError("requests and concurrency must be at least 1")
    if requests is None and duration_s is None:
        raise ValueError("give requests, duration_s or both")
    bodies = [body] if isinstance(body, bytes | bytearray) else list(body)
    if not bodies:
        raise ValueError("body: no request bodies")
    headers = {"Content-Type": content_type, **(extra_headers or {})}
    target = Target.build(url, bodies, headers)
    if warmup:
        await drive(target, concurrency=1, requests=warmup, timeout=timeout)
    return await drive(
        target, concurrency=concurrency, requests=requests, duration_s=duration_s,
        rate=rate, header=header, timeout=timeout,
    )  # fmt: skip


def load(url: str, body: bytes | Sequence[bytes], **kwargs) -> LoadResult:
    """Synchronous wrapper for scripts, notebooks and the promotion's replay."""
    return asyncio.run(run_load(url, body, **kwargs))


def json_bodies(docs: Sequence[dict]) -> list[bytes]:
    """Request bodies from JSON documents (encoded once, before the timed load)."""
    return [json.dumps(d).encode() for d in docs]
