"""The local stand-in for KServe's canary traffic split: one endpoint, two revisions.

Each request goes to the champion or, with probability `canary_percent`, to the canary,
over pooled keep-alive connections (`inference_service.http1`: the hop's cost is the
benchmark's "canary routing cost", so no framework sits on it). Every response carries
`x-model-version` and `x-revision`. A revision only gets traffic after its `/ready`
answered 200; if the canary cannot be reached the request is replayed on the champion
(inference is idempotent), so a dying canary loses no request. The routing is re-read
from state.json when the file changes, so `serve:canary/promote/rollback` take effect
without restarting the gateway. The bearer token and body limit are the predictor's
rules (`inference_service.auth`), checked before the body is read.

Run: `python -m inference_service.gateway [--port P] [--host H] [--state_file F]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from helper.settings import get_settings
from inference_service.auth import bearer_error, is_open_path
from inference_service.http1 import (
    App,
    Request,
    Response,
    ServerConnection,
    UpstreamPool,
    error,
)
from inference_service.state import ServingState, StateError, load_state, state_file

log = logging.getLogger(__name__)

FORWARD_HEADERS = (b"content-type", b"inference-header-content-length", b"authorization")
JSON = [(b"content-type", b"application/json")]
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


class Gateway(App):
    """Routes every request but `/gateway/state` (the routing, for humans and probes)."""

    def __init__(
        self,
        router: Router,
        host: str = "127.0.0.1",
        token: str | None = None,
        max_body_bytes: int | None = None,
    ):
        self.router = router
        self.token = token or None
        self.max_body_bytes = max_body_bytes
        self.pool = UpstreamPool(host)

    def body_limit(self) -> int | None:
        return self.max_body_bytes

    def check_head(self, method: str, path: str, headers: dict[bytes, bytes]) -> Response | None:
        """401 without the token, before the body is read (the body limit is `http1`'s)."""
        if self.token and not is_open_path(path):
            problem = bearer_error(headers.get(b"authorization"), self.token)
            if problem:
                return error(401, problem, headers=[(b"www-authenticate", b"Bearer")])
        return None

    async def handle(self, request: Request) -> Response:
        if request.path == "/gateway/state":
            return Response(200, json.dumps(self.status()).encode(), JSON)
        self.router.refresh()
        candidates = self.router.choose()
        if not candidates:
            return error(503, "nothing deployed: run `task serve:up`")
        headers = [(k, request.headers[k]) for k in FORWARD_HEADERS if k in request.headers]
        last_error = ""
        for role, version, port in candidates:
            try:
                reply = await self.pool.request(
                    port, request.method, request.target, headers, request.body
                )
            except TimeoutError:
                return error(504, f"{role} (version {version}) timed out")
            except OSError as exc:  # refused / reset: try the next candidate
                self.router.ready[port] = False
                last_error = f"{role} (version {version}) unreachable: {exc}"
                continue
            out = [
                (b"content-type", reply.content_type),
                (b"x-model-version", version.encode()),
                (b"x-revision", role.encode()),
            ]
            return Response(reply.status, reply.body, out)
        return error(502, last_error)

    async def probe_once(self) -> None:
        st = self.router.state
        if st is None:
            return
        for rev in [st.champion] + ([st.canary] if st.canary else []):
            target = f"/v2/models/{st.model_name}/ready".encode()
            try:
                reply = await self.pool.request(rev.port, "GET", target, [], b"", timeout_s=1.0)
                self.router.ready[rev.port] = reply.status == 200
            except OSError:  # includes TimeoutError
                self.router.ready[rev.port] = False

    async def probe_loop(self) -> None:
        while True:
            self.router.refresh(force=True)
            await self.probe_once()
            await asyncio.sleep(READY_CHECK_S)

    def status(self) -> dict:
        st = self.router.state
        return {
            "state": st.model_dump(mode="json") if st else None,
            "ready": {str(k): v for k, v in self.router.ready.items()},
        }


async def serve(gateway: Gateway, host: str, port: int) -> None:
    """Listen until SIGTERM/SIGINT; the readiness loop runs alongside."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: ServerConnection(gateway), host, port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    gateway.router.refresh(force=True)
    probe = asyncio.create_task(gateway.probe_loop())
    log.info("gateway listening on http://%s:%d", host, port)
    try:
        await stop.wait()
    finally:
        probe.cancel()
        server.close()
        gateway.pool.close()


def main(argv: Sequence[str] | None = None) -> None:
    settings = get_settings()
    p = argparse.ArgumentParser(description="Local canary gateway in front of two predictors")
    p.add_argument("--host", default=settings.serve_host)
    p.add_argument("--port", type=int, default=settings.serve_port)
    p.add_argument("--state_file", type=Path, default=state_file(settings))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    token = settings.auth_token.get_secret_value() if settings.auth_token else None
    gateway = Gateway(Router(args.state_file), token=token, max_body_bytes=settings.max_body_bytes)
    run = asyncio.run
    try:
        import uvloop

        run = uvloop.run
    except ImportError:  # uvloop is optional (no Windows build); asyncio's loop works too
        pass
    run(serve(gateway, args.host, args.port))


if __name__ == "__main__":
    main()
