"""The predictor's transport wrapper: a header block and its body leave in one write; a
header block with no body still leaves on the next loop turn; other writes pass through."""

from __future__ import annotations

import asyncio

from inference_service.one_write import _HeldHeaders

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


class Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str):
        return ("127.0.0.1", 1) if name == "peername" else None


def _run(steps) -> Recorder:
    rec = Recorder()

    async def main() -> None:
        t = _HeldHeaders(rec)
        await steps(t)
        await asyncio.sleep(0)

    asyncio.run(main())
    return rec


def test_headers_and_body_go_out_in_one_write():
    async def steps(t):
        t.write(HEAD)
        t.write(b"{}")

    assert _run(steps).writes == [HEAD + b"{}"]


def test_a_header_block_without_body_is_flushed_on_the_next_turn():
    async def steps(t):
        t.write(HEAD)
        await asyncio.sleep(0.01)
        t.write(b"later")

    assert _run(steps).writes == [HEAD, b"later"]


def test_close_flushes_what_is_held_and_other_calls_reach_the_transport():
    async def steps(t):
        t.write(HEAD)
        assert t.get_extra_info("peername") == ("127.0.0.1", 1)
        t.close()

    rec = _run(steps)
    assert rec.writes == [HEAD] and rec.closed


def test_body_chunks_and_non_http_bytes_pass_through():
    async def steps(t):
        t.write(b"chunk-1")
        t.write(b"chunk-2")

    assert _run(steps).writes == [b"chunk-1", b"chunk-2"]
