"""The shared load generator against a real local HTTP server: counts, headers, bodies,
chunked answers, pacing, and a server that is not there (recorded, not raised)."""

from __future__ import annotations

import collections
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from inference_service import loadgen


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: collections.Counter = collections.Counter()

    def do_POST(self):  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Echo.seen[body] += 1
        self.send_response(200 if b"fail" not in body else 503)
        self.send_header("x-revision", "v1" if self.headers.get("authorization") else "anon")
        if b"chunk" in body:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
            return
        reply = b'{"ok": true}'
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


@pytest.fixture
def url() -> Iterator[str]:
    _Echo.seen.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v2/models/x/infer"
    finally:
        server.shutdown()
        server.server_close()


def test_sends_exactly_n_and_counts_statuses_and_a_header(url):
    headers = {"authorization": "Bearer t"}
    result = loadgen.load(
        url, b"{}", requests=50, concurrency=4, warmup=3, header="x-revision", extra_headers=headers
    )
    assert result.statuses == collections.Counter({200: 50})
    assert result.header_values == collections.Counter({"v1": 50})
    assert _Echo.seen[b"{}"] == 53  # the warm-up is sent but not counted
    summary = result.summary()
    assert summary["requests"] == 50 and 0 < summary["p50_ms"] <= summary["p99_ms"]


def test_several_bodies_go_round_robin_and_chunked_answers_are_read(url):
    bodies = [b'{"a": 1}', b'{"chunk": 2}', b'{"fail": 3}']
    result = loadgen.load(url, bodies, requests=9, concurrency=2, warmup=0)
    assert all(_Echo.seen[b] == 3 for b in bodies)
    assert result.statuses == collections.Counter({200: 6, 503: 3})
    assert len(result.latencies_s) == 9


def test_duration_mode_and_pacing(url):
    timed = loadgen.load(url, b"{}", requests=None, duration_s=0.3, concurrency=2, warmup=0)
    assert timed.statuses[200] > 0 and 0.3 <= timed.wall_s < 2.0
    t0 = time.perf_counter()
    paced = loadgen.load(url, b"{}", requests=10, rate=20.0, concurrency=3, warmup=0)
    assert paced.statuses[200] == 10
    assert time.perf_counter() - t0 >= 9 / 20.0  # request i starts at i / rate


def test_no_server_is_recorded_as_status_0_with_the_reason():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        result = loadgen.load(
            f"http://127.0.0.1:{port}/", b"{}", requests=3, warmup=0, header="x-revision"
        )
    assert result.statuses == collections.Counter({0: 3}) and result.latencies_s == []
    (reason,) = result.header_values
    assert reason.startswith("no answer (ConnectionRefusedError")


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="at least 1"):
        loadgen.load("http://127.0.0.1:1/", b"{}", requests=0)
    with pytest.raises(ValueError, match="only http"):
        loadgen.load("ftp://127.0.0.1:1/", b"{}", requests=1)
