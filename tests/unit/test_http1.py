"""The gateway's HTTP/1.1 connection handling, fed bytes through a fake transport (no sockets)."""

from __future__ import annotations

import asyncio

from inference_service.http1 import App, Request, Response, ServerConnection


class FakeTransport:
    def __init__(self):
        self.out = b""
        self.closed = False
        self.paused = False
        self.pauses = 0

    def write(self, data: bytes) -> None:
        self.out += data

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume_reading(self) -> None:
        self.paused = False


class Echo(App):
    """Answers with the body it got; counts the requests that reached it."""

    def __init__(self, limit: int | None = None, refuse_paths=()):
        self.seen: list[Request] = []
        self.limit = limit
        self.refuse_paths = refuse_paths

    def body_limit(self):
        return self.limit

    def check_head(self, method, path, headers):
        if path in self.refuse_paths:
            return Response(401, b'{"error": "no"}')
        return None

    async def handle(self, request: Request) -> Response:
        self.seen.append(request)
        await asyncio.sleep(0)  # answers may be produced later than the next request arrives
        return Response(200, request.body, [(b"x-path", request.path.encode())])


def feed(app: App, *chunks: bytes) -> FakeTransport:
    async def run() -> FakeTransport:
        conn, transport = ServerConnection(app), FakeTransport()
        conn.connection_made(transport)
        for chunk in chunks:
            conn.data_received(chunk)
        for _ in range(400):
            await asyncio.sleep(0)
        return transport

    return asyncio.run(run())


def post(path: str, body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"POST " + path.encode() + b" HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n" % len(body)
        + extra + b"\r\n" + body
    )  # fmt: skip


def test_pipelined_requests_are_answered_in_order_on_one_connection():
    app = Echo()
    t = feed(app, post("/a", b"first") + post("/b?q=1", b"second"))
    assert [r.body for r in app.seen] == [b"first", b"second"]
    assert app.seen[1].target == b"/b?q=1" and app.seen[1].path == "/b"
    assert t.out.index(b"first") < t.out.index(b"second")
    assert t.out.count(b"HTTP/1.1 200 OK") == 2 and not t.closed


def test_a_request_split_across_packets_is_reassembled():
    app = Echo()
    raw = post("/a", b"x" * 5000)
    feed(app, raw[:7], raw[7:100], raw[100:])
    assert app.seen[0].body == b"x" * 5000


def test_garbage_gets_400_and_the_connection_is_closed():
    app = Echo()
    t = feed(app, b"NOT HTTP AT ALL\r\n\r\n")
    assert t.out.startswith(b"HTTP/1.1 400") and b"malformed HTTP request" in t.out
    assert t.closed and app.seen == []


def test_declared_body_over_the_limit_is_413_before_any_body_is_read():
    app = Echo(limit=100)
    t = feed(app, b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 5000\r\n\r\n")
    assert t.out.startswith(b"HTTP/1.1 413") and b"100 bytes" in t.out
    assert t.closed and t.paused and app.seen == []


def test_chunked_body_over_the_limit_is_413_and_never_reaches_the_app():
    app = Echo(limit=100)
    head = b"POST /a HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
    t = feed(app, head + b"64\r\n" + b"y" * 100 + b"\r\n", b"1\r\nz\r\n0\r\n\r\n")
    assert t.out.startswith(b"HTTP/1.1 413") and t.closed and app.seen == []


def test_body_at_the_limit_passes_whole():
    app = Echo(limit=100)
    feed(app, post("/a", b"y" * 100))
    assert app.seen[0].body == b"y" * 100


def test_refusal_from_check_head_skips_the_app_and_keeps_the_connection():
    app = Echo(refuse_paths={"/secret"})
    t = feed(app, post("/secret", b"x") + post("/open", b"ok"))
    assert t.out.startswith(b"HTTP/1.1 401") and b"HTTP/1.1 200" in t.out
    assert [r.path for r in app.seen] == ["/open"] and not t.closed


def test_expect_continue_gets_100_before_the_answer():
    app = Echo()
    t = feed(app, post("/a", b"body", b"expect: 100-continue\r\n"))
    assert t.out.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200")


def test_connection_close_and_http10_close_after_the_answer():
    for raw in (post("/a", b"x", b"connection: close\r\n"), b"GET /a HTTP/1.0\r\n\r\n"):
        t = feed(Echo(), raw)
        assert b"HTTP/1.1 200" in t.out and b"connection: close" in t.out and t.closed


def test_head_gets_headers_without_a_body():
    t = feed(Echo(), b"HEAD /a HTTP/1.1\r\nhost: x\r\n\r\n")
    assert t.out.startswith(b"HTTP/1.1 200") and t.out.endswith(b"\r\n\r\n")


def test_an_app_error_is_a_500_not_a_dead_connection():
    class Broken(Echo):
        async def handle(self, request):
            raise RuntimeError("bug")

    t = feed(Broken(), post("/a", b"x"))
    assert t.out.startswith(b"HTTP/1.1 500") and not t.closed


def test_a_pipelining_flood_pauses_reading_until_answers_drain():
    app = Echo()
    t = feed(app, b"".join(post("/a", b"%d" % i) for i in range(100)))
    assert [r.body for r in app.seen] == [b"%d" % i for i in range(100)]
    assert t.pauses >= 1 and not t.paused  # paused while queued, reading again once drained
    assert t.out.count(b"HTTP/1.1 200 OK") == 100
