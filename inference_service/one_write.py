"""Send each response's header block and its first body bytes in one socket write.

uvicorn writes the status line and headers, then the body, as two `send` calls. A predictor
killed between the two (a canary SIGKILLed under load, on a busy machine) leaves HAProxy with
a response it has already started to forward: it cannot retry it, and the client gets a
truncated body. Holding the header block until the body follows (both are written in the same
event-loop step, so nothing waits) means the proxy sees either nothing — and retries on the
champion (`retry-on empty-response`) — or the whole small response.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.auto import AutoHTTPProtocol


class _HeldHeaders:
    """A transport that holds a bare header block until the next write (or the next loop
    turn at the latest); everything else passes through."""

    def __init__(self, inner: asyncio.Transport) -> None:
        self._inner = inner
        self._held = b""

    def write(self, data: bytes) -> None:
        if self._held:
            data, self._held = self._held + data, b""
        elif data.startswith(b"HTTP/1.1 ") and data.endswith(b"\r\n\r\n"):
            self._held = bytes(data)
            asyncio.get_running_loop().call_soon(self._flush)
            return
        self._inner.write(data)

    def _flush(self) -> None:
        if self._held:
            data, self._held = self._held, b""
            self._inner.write(data)

    def close(self) -> None:
        self._flush()
        self._inner.close()

    def __getattr__(self, name: str):
        return getattr(self._inner, name)


class OneWriteProtocol(AutoHTTPProtocol):
    """uvicorn's own HTTP protocol (httptools or h11) over `_HeldHeaders`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_HeldHeaders(transport))  # type: ignore[arg-type]
