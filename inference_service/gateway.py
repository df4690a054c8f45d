"""The local stand-in for KServe's canary traffic split: one endpoint, two revisions.

A raw ASGI app (no framework: its added latency is a target) forwarding each
request over one pooled aiohttp session to the champion or, with probability
`canary_percent`, to the canary. Every response carries `x-model-version` and
`x-revision`. A revision only gets traffic after its `/ready` answered 200; if
the canary's connection fails the request is replayed on the champion
(inference is idempotent), so a dying canary loses no request. The routing is
re-read from state.json when the file changes, so `serve:canary/promote/
rollback` take effect without restarting the gateway.

Run: `python -m inference_service.gateway [--port P] [--host H] [--state_file F]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import uvicorn

from helper.settings import get_settings
from inference_service.auth import RequestGuard
from inference_service.state import ServingState, StateError, load_state, state_file

log = logging.getLogger(__name__)

FORWARD_HEADERS = (b"content-type", b"inference-header-content-length", b"authorization")
STATE_CHECK_S = 0.25
READY_CHECK_S = 0.5


class Router:
    """Current routing table plus the readiness each revision last reported."""

    def __init__(self, path: Path, rng: random.Random | None = None):
        self.path = path
        self.rng = rng or random.Random()
        self.state: ServingState | None = None
        self.ready: dict[int, bool] = {}
        self._mtime: float | None = None
        self._checked = 0.0

    def refresh(self, force: bool = False) -> None:
        """Re-read state.json if it changed; at most every STATE_CHECK_S on the hot path."""
        now = time.monotonic()
        if not force and now - self._checked < STATE_CHECK_S:
            return
        self._checked = now
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self.state, self._mtime = None, None
            return
        if mtime != self._mtime:
            try:
                self.state = load_state(self.path)
                self._mtime = mtime
            except StateError as exc:  # keep routing by the last good state
                log.error("%s", exc)

    def choose(self) -> list[tuple[str, str, int]]:
        """Ordered (role, version, port) candidates: the chosen revision first, fallback after."""
        st = self.state
        if st is None:
            return []
        champ = ("champion", st.champion.version, st.champion.port)
        canary = st.canary
        if canary is None or st.canary_percent == 0 or not self.ready.get(canary.port):
            return [champ]
        can = ("canary", canary.version, canary.port)
        if not self.ready.get(st.champion.port):
            return [can, champ]
        if self.rng.random() * 100.0 < st.canary_percent:
            return [can, champ]
        return [champ]


async def _read_body(receive) -> bytes:
    chunks = []
    while True:
        msg = await receive()
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body"):
            return b"".join(chunks)


async def _send(send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _error(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


class Gateway:
    """ASGI callable; `/gateway/state` reports routing, everything else is proxied."""

    def __init__(self, router: Router, host: str = "127.0.0.1"):
        self.router = router
        self.host = host
        self.session: aiohttp.ClientSession | None = None
        self._probe: asyncio.Task | None = None

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive, send):
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                connector = aiohttp.TCPConnector(limit=256, ttl_dns_cache=None)
                self.session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
                self.router.refresh(force=True)
                self._probe = asyncio.create_task(self._probe_loop())
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                if self._probe:
                    self._probe.cancel()
                if self.session:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _probe_loop(self):
        while True:
            self.router.refresh(force=True)
            await self.probe_once()
            await asyncio.sleep(READY_CHECK_S)

    async def probe_once(self) -> None:
        st = self.router.state
        if st is None:
            return
        revisions = [st.champion] + ([st.canary] if st.canary else [])
        for rev in revisions:
            url = f"http://{self.host}:{rev.port}/v2/models/{st.model_name}/ready"
            try:
                async with self.session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as r:
                    self.router.ready[rev.port] = r.status == 200
            except (aiohttp.ClientError, TimeoutError):
                self.router.ready[rev.port] = False

    async def _http(self, scope, receive, send):
        path = scope["path"]
        if path == "/gateway/state":
            body = json.dumps(self.status()).encode()
            await _send(send, 200, body, [(b"content-type", b"application/json")])
            return
        body = await _read_body(receive)
        self.router.refresh()
        candidates = self.router.choose()
        if not candidates:
            await _send(send, 503, _error("nothing deployed: run `task serve:up`"), [])
            return
        headers = {k.decode(): v.decode() for k, v in scope["headers"] if k in FORWARD_HEADERS}
        query = scope.get("query_string", b"").decode()
        target = path + ("?" + query if query else "")
        last_error = ""
        for role, version, port in candidates:
            url = f"http://{self.host}:{port}{target}"
            try:
                async with self.session.request(
                    scope["method"], url, data=body, headers=headers
                ) as resp:
                    payload = await resp.read()
                    out = [
                        (b"content-type", resp.headers.get("content-type", "").encode()),
                        (b"x-model-version", version.encode()),
                        (b"x-revision", role.encode()),
                    ]
                    await _send(send, resp.status, payload, out)
                    return
            except aiohttp.ClientError as exc:
                self.router.ready[port] = False
                last_error = f"{role} (version {version}) unreachable: {exc}"
        await _send(send, 502, _error(last_error), [(b"content-type", b"application/json")])

    def status(self) -> dict:
        st = self.router.state
        return {
            "state": st.model_dump(mode="json") if st else None,
            "ready": {str(k): v for k, v in self.router.ready.items()},
        }


def main(argv: Sequence[str] | None = None) -> None:
    settings = get_settings()
    p = argparse.ArgumentParser(description="Local canary gateway in front of two predictors")
    p.add_argument("--host", default=settings.serve_host)
    p.add_argument("--port", type=int, default=settings.serve_port)
    p.add_argument("--state_file", type=Path, default=state_file(settings))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    token = settings.auth_token.get_secret_value() if settings.auth_token else None
    app = RequestGuard(
        Gateway(Router(args.state_file), host="127.0.0.1"),
        token=token,
        max_body_bytes=settings.max_body_bytes,
    )
    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
