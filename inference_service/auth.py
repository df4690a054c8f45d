"""Request guard for the predictor: bearer token and body-size limit.

The predictor uses the ASGI middleware below; the local proxy (HAProxy,
inference_service.proxy) enforces the same rules as ACLs generated from the same
settings, so both refuse before any parsing or model code runs:

* when `auth_token` is set, every route except the probes (health, ready, server
  metadata, metrics) needs `Authorization: Bearer <token>`; the
  comparison is constant-time (`hmac.compare_digest`) so response timing does not
  leak how much of a guess was right. A refusal is 401 with a one-line reason.
* a body above `max_body_bytes` is refused with 413 naming the limit, before it
  is read into memory: the declared Content-Length is checked first, and bodies
  without one (chunked) are read only up to the limit.

Off by default locally (`auth_token` unset); the cluster overlay sets it from a Secret.
"""

from __future__ import annotations

import hmac
import json
import re

# Probes must work without a token (kubelet, HAProxy's health checks, Prometheus, the tests).
# inference_service.haproxy_config.OPEN_PATHS is the same list for HAProxy.
_OPEN_PATHS = re.compile(
    r"^/(?:"
    r"|v2|v2/health/(?:live|ready)|metrics"  # server-level probes/metadata
    r"|v2/models/[^/]+(?:/versions/[^/]+)?/ready"  # v2 model readiness
    r"|v1/models/[^/:]+"  # v1 model readiness
    r")/?$"
)


def is_open_path(path: str) -> bool:
    """True for the probe routes that stay reachable without a token."""
    return bool(_OPEN_PATHS.match(path))


def _header(scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value
    return None


def bearer_error(header: bytes | None, token: str) -> str | None:
    """Why the Authorization header does not carry `token`, or None when it does."""
    if header is None:
        return "missing bearer token: send 'Authorization: Bearer <token>' (auth_token is set)"
    scheme, _, given = header.decode("latin-1").strip().partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return "malformed Authorization header: expected 'Bearer <token>'"
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return "invalid bearer token"
    return None


def too_large(size: int | None, limit: int) -> str:
    """The 413 message; `size` is None when the body had no Content-Length (chunked)."""
    what = f"request body of {size} bytes" if size is not None else "request body"
    return f"{what} exceeds the limit of {limit} bytes (max_body_bytes)"


async def _reply(send, status: int, message: str, extra: list | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += extra or []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """ASGI middleware enforcing the bearer token and the body limit (see module doc)."""

    def __init__(self, app, *, token: str | None = None, max_body_bytes: int | None = None):
        self.app = app
        self.token = token or None
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.token and not is_open_path(scope["path"]):
            problem = bearer_error(_header(scope, b"authorization"), self.token)
            if problem:
                await _reply(send, 401, problem, [(b"www-authenticate", b"Bearer")])
                return
        if self.max_body_bytes is None:
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await _reply(send, 413, too_large(int(declared), self.max_body_bytes))
            return
        body, more = await self._read_bounded(receive)
        if more:
            await _reply(send, 413, too_large(None, self.max_body_bytes))
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read_bounded(self, receive) -> tuple[bytes, bool]:
        """The body, read up to one byte past the limit; `more` says the limit was passed."""
        chunks, size = [], 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return b"".join(chunks), False
            chunk = msg.get("body", b"")
            chunks.append(chunk)
            size += len(chunk)
            if size > self.max_body_bytes:
                return b"".join(chunks), True
            if not msg.get("more_body"):
                return b"".join(chunks), False


def _replay(body: bytes, receive):
    """A receive() that hands the already-read body over once, then defers to the client."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
