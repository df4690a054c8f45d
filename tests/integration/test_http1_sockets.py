"""The gateway's pooled upstream client against a real loopback server (in-process, no model)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from inference_service.http1 import App, Request, Response, ServerConnection, UpstreamPool

pytestmark = pytest.mark.integration


class Counter(App):
    def __init__(self):
        self.calls = 0
        self.connections: list[ServerConnection] = []

    async def handle(self, request: Request) -> Response:
        self.calls += 1
        return Response(200, b"call %d" % self.calls, [(b"content-type", b"text/plain")])


async def _server(app: Counter):
    def factory():
        conn = ServerConnection(app)
        app.connections.append(conn)
        return conn

    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@contextlib.asynccontextmanager
async def counter_and_pool():
    """A counting server on a free loopback port and a pool to it, both closed afterwards."""
    app = Counter()
    server, port = await _server(app)
    pool = UpstreamPool()
    try:
        yield app, port, pool
    finally:
        pool.close()
        server.close()


def test_keep_alive_connections_are_reused():
    async def run():
        async with counter_and_pool() as (app, port, pool):
            for _ in range(5):
                reply = await pool.request(port, "POST", b"/x", [], b"{}")
                assert reply.status == 200 and reply.content_type == b"text/plain"
        return app

    app = asyncio.run(run())
    assert app.calls == 5 and len(app.connections) == 1


def test_a_connection_the_server_closed_while_idle_is_replaced_transparently():
    """uvicorn closes idle keep-alive connections after 5 s; the next request must not fail."""

    async def run():
        async with counter_and_pool() as (app, port, pool):
            assert (await pool.request(port, "GET", b"/a", [], b"")).body == b"call 1"
            for conn in app.connections:  # the server drops the idle connection...
                conn.transport.close()
            # ...and the client has not noticed yet: no await between the close and the request
            reply = await pool.request(port, "GET", b"/b", [], b"")
        return app, reply

    app, reply = asyncio.run(run())
    assert reply.status == 200 and reply.body == b"call 2"
    assert len(app.connections) == 2


def test_nobody_listening_raises_oserror_for_the_caller_to_fall_back():
    async def run():
        app = Counter()
        server, port = await _server(app)
        server.close()
        await server.wait_closed()
        with pytest.raises(OSError):
            await UpstreamPool().request(port, "GET", b"/a", [], b"")

    asyncio.run(run())
