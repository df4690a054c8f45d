"""The local traffic splitter: HAProxy in front of the two predictor slots.

The laptop twin of Knative's traffic split. One backend holds both predictor slots as
weighted servers (`balance random(1)`: each request picks a slot with probability
weight/total, independent of the order rows arrive in); champion and canary shares are
changed at run time through HAProxy's runtime API (a unix socket under the state dir:
`set weight`, `set map`), never by a restart, so no connection is dropped. Every answer
carries `x-revision` (champion | canary, from a map keyed by the slot that answered) and
the predictor's own `x-model-version`.

Robustness is HAProxy's: `option httpchk` on the model's v2 ready route takes a dead slot
out of rotation within ~2 s (at its first refused connection, with `observe layer4`), and
until then `retry-on all-retryable-errors` with `option redispatch` replays a failed
request (refused, reset, empty answer, 5xx) on the other slot — inference is idempotent
and `http-request wait-for-body` keeps the body for the replay (bodies up to
`tune.bufsize`, i.e. every single-row request). The bearer token
and the body limit are the predictor's rules (inference_service.auth) enforced as ACLs
before a request reaches a slot; the token comes from the environment (`"${MLP_AUTH_TOKEN}"`
is expanded by HAProxy), so it is never written to the generated file.

HAProxy's built-in Prometheus exporter (per-server codes and timings) and its stats page
listen on `proxy_stats_port`, also on 127.0.0.1 only. The system's haproxy service and
/etc/haproxy are never used: the config, map and socket live under `<state_dir>/serving/haproxy`.

This module is the process and its runtime API; the config text it writes is rendered by
`inference_service.haproxy_config` (pure functions of settings and state).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import socket
from pathlib import Path

from helper.atomic import atomic_write
from helper.processes import ManagedProcess, ServiceError, http_ok
from helper.settings import Settings
from inference_service.haproxy_config import (
    BACKEND,
    HEALTH_PATH,
    files,
    render_config,
    render_roles,
    roles,
    server_name,
    weights,
)
from inference_service.state import ServingState

_SOCKET_PATH_MAX = 107  # sun_path is 108 bytes with the terminating NUL


class ProxyError(ServiceError):
    """HAProxy is missing, refused its config, or its runtime API did not answer."""


def _write(path: Path, text: str) -> None:
    """Atomic 0600 write (the config is ours alone; it never holds the token, but still)."""
    atomic_write(path, text, mode=0o600)


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or (
        "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
    )
    if not found:
        raise ProxyError(
            "haproxy is not installed: install the Debian package `haproxy` "
            "(`task local:deps`, or apt-get install -y --no-install-recommends haproxy)"
        )
    return found


class Proxy:
    """The HAProxy process of the local serving stack and its runtime API."""

    def __init__(self, settings: Settings, env: dict[str, str] | None = None):
        self.settings = settings
        self.files = files(settings)
        self.env = env or {}
        if len(str(self.files.socket)) > _SOCKET_PATH_MAX:
            raise ProxyError(
                f"state_dir is too deep for a unix socket ({self.files.socket}): use a shorter "
                "MLP_STATE_DIR"
            )

    def process(self) -> ManagedProcess:
        s = self.settings
        stats = f"http://127.0.0.1:{s.proxy_stats_port}{HEALTH_PATH}"
        return ManagedProcess(
            name="haproxy",
            argv=["haproxy", "-db", "-f", str(self.files.config)],
            run_dir=s.run_dir,
            log_dir=s.log_dir,
            port=s.serve_port,
            health=lambda: http_ok(stats),
            env=self.env,
            host=s.serve_host,
        )

    def write_files(self, state: ServingState | None) -> None:
        token_env = "MLP_AUTH_TOKEN" if self.settings.auth_token is not None else None
        ports = self.settings.predictor_ports
        _write(self.files.roles, render_roles(state, ports))
        _write(self.files.config, render_config(self.settings, state, token_env=token_env))

    def start(self, state: ServingState | None) -> int:
        """Write the files and start HAProxy (no-op when it runs: then apply `state` live)."""
        proc = self.process()
        if proc.running() and proc.health():
            self.apply(state)
            return proc.pid()
        binary = haproxy_binary()
        self.write_files(state)
        proc.argv = [binary, "-db", "-f", str(self.files.config)]
        self._check_config(binary)
        return proc.start(timeout=30)

    def _check_config(self, binary: str) -> None:
        import subprocess

        out = subprocess.run(  # noqa: S603 - our binary, our file
            [binary, "-c", "-q", "-f", str(self.files.config)],
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
            timeout=30,
            check=False,
        )
        if out.returncode != 0:
            raise ProxyError(f"haproxy refused {self.files.config}: {out.stderr.strip()[-800:]}")

    def stop(self) -> bool:
        return self.process().stop()

    # --- runtime API ---------------------------------------------------------------
    def command(self, line: str, timeout: float = 5.0) -> str:
        """One runtime API command (non-interactive: HAProxy answers and closes)."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(str(self.files.socket))
                sock.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError as exc:
            raise ProxyError(f"HAProxy runtime API at {self.files.socket}: {exc}") from exc
        return b"".join(chunks).decode(errors="replace")

    def apply(self, state: ServingState | None, with_roles: bool = True) -> None:
        """Weights (and roles) of `state`, live; the files follow so a restart matches.

        `with_roles=False` leaves `x-revision` as it was: a slot losing all its traffic keeps
        naming itself what it was while its last requests drain (`apply_roles` after)."""
        ports = self.settings.predictor_ports
        self.write_files(state)
        if with_roles:
            self.apply_roles(state)
        # Raise before lowering: at no moment do both slots weigh 0.
        for port, weight in sorted(weights(state, ports).items(), key=lambda kv: -kv[1]):
            self._ok(self.command(f"set weight {BACKEND}/{server_name(port)} {weight}"))

    def apply_roles(self, state: ServingState | None) -> None:
        for port, role in roles(state, self.settings.predictor_ports).items():
            self._ok(self.command(f"set map {self.files.roles} {server_name(port)} {role}"))

    @staticmethod
    def _ok(answer: str) -> None:
        text = answer.strip()
        if text and not text.lower().startswith("done"):
            raise ProxyError(f"HAProxy runtime API: {text}")

    def servers(self) -> dict[int, dict]:
        """Per slot: status (UP/DOWN/MAINT/no check), weight, current and total sessions, 5xx."""
        rows = csv.DictReader(io.StringIO(self.command("show stat").lstrip("# ")))
        out = {}
        for row in rows:
            if row.get("pxname") != BACKEND or not row.get("svname", "").startswith("slot"):
                continue
            port = int(row["svname"].removeprefix("slot"))
            out[port] = {
                "status": row.get("status"),
                "weight": int(row.get("weight") or 0),
                "current": int(row.get("scur") or 0),
                "total": int(row.get("stot") or 0),
                "http_5xx": int(row.get("hrsp_5xx") or 0),
            }
        return out

    def is_up(self, port: int) -> bool:
        return self.servers().get(port, {}).get("status") == "UP"  # not "UP 1/2": going down
