"""A small HTTP/1.1 server connection and a pooled client, on httptools' C parser.

Why not uvicorn + aiohttp: the gateway's whole job is one extra hop, and that hop's cost is
what the canary benchmark measures. Through an ASGI framework and aiohttp's client the hop
cost about as much as the predictor itself (~1 ms per request on a 2-core box); parsing with
httptools (the parser uvicorn uses) straight into buffers and keeping keep-alive connections
to each predictor removes the per-request framework work. The application only sees whole
requests (`Request`) and returns whole responses (`Response`): bodies are bounded by
`max_body_bytes` and by the predictor's `max_batch_rows`, so buffering them is fine.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from dataclasses import dataclass, field
from http import HTTPStatus

import httptools

from inference_service.auth import too_large

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 64 * 1024
MAX_QUEUED = 32  # pipelined requests held per connection before reading pauses
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@dataclass
class Request:
    method: str
    target: bytes  # path and query, as sent
    headers: dict[bytes, bytes]  # lower-case names
    body: bytes = b""

    @property
    def path(self) -> str:
        return self.target.split(b"?", 1)[0].decode("latin-1")


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    close: bool = False  # close the connection after this response

    def encode(self, keep_alive: bool, head_only: bool = False) -> bytes:
        try:
            reason = HTTPStatus(self.status).phrase
        except ValueError:
            reason = ""
        lines = [f"HTTP/1.1 {self.status} {reason}".encode()]
        lines.append(b"content-length: %d" % len(self.body))
        lines += [k + b": " + v for k, v in self.headers]
        if not keep_alive or self.close:
            lines.append(b"connection: close")
        return b"\r\n".join(lines) + b"\r\n\r\n" + (b"" if head_only else self.body)


class App:
    """What a `ServerConnection` serves; `check_head` can refuse before the body is read."""

    def check_head(self, method: str, path: str, headers: dict[bytes, bytes]) -> Response | None:
        return None

    def body_limit(self) -> int | None:
        return None

    async def handle(self, request: Request) -> Response:  # pragma: no cover - interface
        raise NotImplementedError


class ServerConnection(asyncio.Protocol):
    """One client connection: parse requests, answer them in order (pipelining-safe)."""

    def __init__(self, app: App):
        self.app = app
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: collections.deque = collections.deque()
        self.worker: asyncio.Task | None = None
        self.closing = False
        self.paused = False
        self._reset()

    def _reset(self) -> None:
        self.method = ""
        self.url = b""
        self.headers: dict[bytes, bytes] = {}
        self.header_bytes = 0
        self.body: list[bytes] = []
        self.size = 0
        self.refusal: Response | None = None

    # --- asyncio.Protocol ------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(error(400, "protocol upgrades are not supported", close=True))
        except httptools.HttpParserError as exc:
            self._refuse(error(400, f"malformed HTTP request: {exc}", close=True))

    # --- httptools callbacks ---------------------------------------------------------
    def on_message_begin(self) -> None:
        self._reset()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > MAX_HEADER_BYTES:
            raise httptools.HttpParserError(f"headers larger than {MAX_HEADER_BYTES} bytes")
        self.headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        self.method = method = self.parser.get_method().decode("latin-1")
        path = self.url.split(b"?", 1)[0].decode("latin-1")
        self.refusal = self.app.check_head(method, path, self.headers) or self._declared_too_large()
        if self.refusal is not None and self.refusal.close:
            self._refuse(self.refusal)  # e.g. a declared body over the limit: do not read it
        elif self.refusal is None and self.headers.get(b"expect", b"").lower() == b"100-continue":
            self.transport.write(CONTINUE)

    def _declared_too_large(self) -> Response | None:
        declared, limit = self.headers.get(b"content-length", b""), self.app.body_limit()
        if limit is not None and declared.isdigit() and int(declared) > limit:
            return error(413, too_large(int(declared), limit), close=True)
        return None

    def on_body(self, chunk: bytes) -> None:
        if self.refusal is not None or self.closing:
            return
        self.size += len(chunk)
        limit = self.app.body_limit()
        if limit is not None and self.size > limit:  # chunked bodies have no declared size
            self.refusal = error(413, too_large(None, limit), close=True)
            self.body = []
            self._refuse(self.refusal)
            return
        self.body.append(chunk)

    def on_message_complete(self) -> None:
        if self.closing:
            return
        keep_alive, method = self.parser.should_keep_alive(), self.method
        if self.refusal is not None:
            self.queue.append((self.refusal, keep_alive and not self.refusal.close, method))
        else:
            req = Request(method, self.url, self.headers, b"".join(self.body))
            self.queue.append((req, keep_alive, method))
        if len(self.queue) >= MAX_QUEUED and not self.paused and self.transport is not None:
            self.paused = True  # a client pipelining without reading answers: stop reading
            self.transport.pause_reading()
        self._kick()

    # --- answering -------------------------------------------------------------------
    def _refuse(self, response: Response) -> None:
        """A request that cannot be parsed: answer after the earlier ones, then close."""
        self.closing = True
        if self.transport is not None:
            self.transport.pause_reading()
        self.queue.append((response, False, "POST"))
        self._kick()

    def _kick(self) -> None:
        if self.worker is None:
            self.worker = asyncio.get_running_loop().create_task(self._answer())

    async def _answer(self) -> None:
        try:
            while self.queue:
                item, keep_alive, method = self.queue.popleft()
                if self.paused and not self.closing and len(self.queue) < MAX_QUEUED // 2:
                    self.paused = False
                    if self.transport is not None:
                        self.transport.resume_reading()
                if isinstance(item, Response):
                    response = item
                else:
                    try:
                        response = await self.app.handle(item)
                    except Exception:  # a bug must not kill the connection silently
                        log.exception("gateway: unhandled error")
                        response = error(500, "internal gateway error")
                if self.transport is None:
                    return
                self.transport.write(response.encode(keep_alive, head_only=method == "HEAD"))
                if not keep_alive or response.close:
                    self.closing = True
                    self.transport.close()
                    return
        finally:
            self.worker = None


def error(status: int, message: str, close: bool = False, headers=()) -> Response:
    """A JSON `{"error": message}` response, the shape the predictor uses for its errors."""
    body = json.dumps({"error": message}).encode()
    return Response(status, body, [(b"content-type", b"application/json"), *headers], close)


# --- client side -----------------------------------------------------------------------
@dataclass
class Reply:
    status: int
    body: bytes
    content_type: bytes
    keep_alive: bool


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection to a predictor; one request in flight at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future | None = None
        self.closed = False
        self.content_type = b""
        self.body: list[bytes] = []

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.closed = True
        self._fail(ConnectionResetError("the predictor closed the connection"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"malformed response from the predictor: {exc}"))
            self.close()

    def on_message_begin(self) -> None:
        self.content_type, self.body = b"", []

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"content-type":
            self.content_type = value

    def on_body(self, chunk: bytes) -> None:
        self.body.append(chunk)

    def on_message_complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            reply = Reply(
                self.parser.get_status_code(),
                b"".join(self.body),
                self.content_type,
                self.parser.should_keep_alive(),
            )
            self.waiter.set_result(reply)

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    async def roundtrip(self, data: bytes, timeout_s: float) -> Reply:
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        async with asyncio.timeout(timeout_s):
            return await self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class UpstreamPool:
    """Idle keep-alive connections per port on one host, opened on demand."""

    def __init__(self, host: str = "127.0.0.1", timeout_s: float = 60.0):
        self.host = host
        self.timeout_s = timeout_s
        self.idle: dict[int, list[UpstreamConnection]] = collections.defaultdict(list)

    async def request(
        self, port: int, method: str, target: bytes, headers: list, body: bytes, timeout_s=None
    ) -> Reply:
        """One request; a reused connection the predictor had closed is retried once on a new
        one (inference is idempotent). Raises OSError when the port cannot be reached."""
        upstream_method = "GET" if method == "HEAD" else method
        data = _request_bytes(upstream_method, target, self.host, port, headers, body)
        timeout_s = timeout_s or self.timeout_s
        idle = self.idle[port]
        while idle:
            conn = idle.pop()
            if conn.closed:
                continue
            try:
                return self._keep(port, conn, await conn.roundtrip(data, timeout_s))
            except ConnectionError:
                conn.close()
                break
            except BaseException:
                conn.close()
                raise
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(UpstreamConnection, self.host, port)
        try:
            return self._keep(port, conn, await conn.roundtrip(data, timeout_s))
        except BaseException:
            conn.close()
            raise

    def _keep(self, port: int, conn: UpstreamConnection, reply: Reply) -> Reply:
        if reply.keep_alive and not conn.closed:
            self.idle[port].append(conn)
        else:
            conn.close()
        return reply

    def close(self) -> None:
        for conns in self.idle.values():
            for conn in conns:
                conn.close()
        self.idle.clear()


def _request_bytes(method, target: bytes, host, port, headers, body: bytes) -> bytes:
    lines = [method.encode() + b" " + target + b" HTTP/1.1", f"host: {host}:{port}".encode()]
    lines += [k + b": " + v for k, v in headers]
    lines.append(b"content-length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body
