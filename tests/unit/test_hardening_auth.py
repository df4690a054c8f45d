"""RequestGuard as a plain ASGI callable (no sockets): token, probes, body limit, pass-through."""

from __future__ import annotations

import asyncio
import json
import re
import secrets

import pytest

from helper.settings import load_settings
from inference_service.auth import RequestGuard, bearer_error, is_open_path
from inference_service.haproxy_config import OPEN_PATHS

TOKEN = secrets.token_urlsafe(16)  # generated per run: no credential literal in the repo


async def _echo_app(scope, receive, send):
    """Answers 200 with the body it received, so a test sees exactly what got through."""
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def call(guard, path="/v2/models/iris/infer", headers=(), chunks=(b"{}",), declare=True):
    """Run one request through `guard`; return (status, body, response headers)."""
    hdrs = [(k.encode(), v.encode()) for k, v in headers]
    if declare:
        hdrs.append((b"content-length", str(sum(map(len, chunks))).encode()))
    scope = {"type": "http", "method": "POST", "path": path, "headers": hdrs}
    queue = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    sent = []

    async def receive():
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(msg):
        sent.append(msg)

    asyncio.run(guard(scope, receive, send))
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], body, dict(start["headers"])


def test_auth_is_off_by_default():
    assert load_settings().auth_token is None or not load_settings().auth_token.get_secret_value()
    guard = RequestGuard(_echo_app, token=None, max_body_bytes=None)
    assert call(guard, chunks=(b'{"a": 1}',))[:2] == (200, b'{"a": 1}')


@pytest.mark.parametrize(
    "header, message",
    [
        (None, "missing bearer token"),
        (f"Bearer {TOKEN}x", "invalid bearer token"),
        (f"Bearer {TOKEN[:-1]}", "invalid bearer token"),
        (f"Basic {TOKEN}", "malformed Authorization header"),
        ("Bearer ", "malformed Authorization header"),
    ],
)
def test_inference_without_the_right_token_is_401_naming_why(header, message):
    guard = RequestGuard(_echo_app, token=TOKEN)
    headers = [("authorization", header)] if header is not None else []
    status, body, resp_headers = call(guard, headers=headers)
    assert status == 401 and message in json.loads(body)["error"]
    assert resp_headers[b"www-authenticate"] == b"Bearer"


@pytest.mark.parametrize("path", ["/v2/models/iris/infer", "/v1/models/iris:predict", "/v2/x"])
def test_the_right_token_passes_on_any_protected_route(path):
    guard = RequestGuard(_echo_app, token=TOKEN)
    for scheme in ("Bearer", "bearer"):
        status, body, _ = call(guard, path, [("Authorization", f"{scheme} {TOKEN}")])
        assert (status, body) == (200, b"{}")
    assert call(guard, path)[0] == 401


@pytest.mark.parametrize(
    "path, open_",
    [
        ("/", True),
        ("/v2/health/live", True),
        ("/v2/health/ready", True),
        ("/v2/models/iris/ready", True),
        ("/v2/models/iris/versions/3/ready", True),
        ("/v1/models/iris", True),
        ("/metrics", True),
        ("/v2/models/iris/infer", False),
        ("/v2/models/iris", False),
        ("/v1/models/iris:predict", False),
        ("/v2/models/iris/ready/../infer", False),
    ],
)
def test_only_probe_routes_are_open(path, open_):
    assert is_open_path(path) is open_
    status = call(RequestGuard(_echo_app, token=TOKEN), path)[0]
    assert (status == 200) is open_
    # HAProxy's ACL (haproxy_config.OPEN_PATHS, PCRE) opens exactly the same routes
    assert bool(re.match(OPEN_PATHS, path)) is open_


def test_bearer_error_accepts_only_the_exact_token():
    assert bearer_error(f"Bearer {TOKEN}".encode(), TOKEN) is None
    assert bearer_error(f"Bearer  {TOKEN} ".encode(), TOKEN) is None
    assert bearer_error(f"Bearer {TOKEN}{TOKEN}".encode(), TOKEN) == "invalid bearer token"


@pytest.mark.parametrize("declare", [True, False], ids=["content-length", "chunked"])
def test_body_above_the_limit_is_413_naming_it(declare):
    guard = RequestGuard(_echo_app, max_body_bytes=1024)
    chunks = (b"x" * 600, b"y" * 600)
    status, body, _ = call(guard, chunks=chunks, declare=declare)
    assert status == 413
    assert "exceeds the limit of 1024 bytes (max_body_bytes)" in json.loads(body)["error"]
    if declare:
        assert "1200 bytes" in json.loads(body)["error"]


def test_body_at_the_limit_reaches_the_app_whole():
    guard = RequestGuard(_echo_app, max_body_bytes=1024)
    chunks = (b"a" * 500, b"b" * 524)
    for declare in (True, False):
        assert call(guard, chunks=chunks, declare=declare)[:2] == (200, b"".join(chunks))


def test_token_is_checked_before_the_body_is_read():
    guard = RequestGuard(_echo_app, token=TOKEN, max_body_bytes=1024)
    assert call(guard, chunks=(b"x" * 5000,))[0] == 401


def test_max_body_bytes_setting_is_validated():
    from helper.settings import SettingsError

    assert load_settings(max_body_bytes=4096).max_body_bytes == 4096
    with pytest.raises(SettingsError, match="max_body_bytes"):
        load_settings(max_body_bytes=-1)
