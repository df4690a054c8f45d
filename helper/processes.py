"""Background processes tracked by pid files.

Local services (S3, MLflow, predictors, HAProxy, Prometheus) are started in their own
session so that stopping one signals its whole process group: MLflow's web
workers and any other children go with it, and nothing is orphaned. The pid file (one
number, also read by ops/exposure.py) is the only state kept between commands; whether
that pid still runs, and who else is in its group, is asked of psutil, and every wait
(healthy after start, gone after a signal) is one tenacity retry policy.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
from tenacity import Retrying, retry_if_result, stop_after_delay, wait_fixed

from helper.errors import PlatformError


class ServiceError(PlatformError, RuntimeError):
    """A local service could not be started, reached or stopped; the message says which."""


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like the servers themselves (uvicorn, werkzeug): a port whose last server just
        # stopped sits in TIME_WAIT for a minute but can be reused; a listener still blocks.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """An ephemeral port that is free right now (tests use it to avoid clashes)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def free_port_block(count: int, host: str = "127.0.0.1", tries: int = 100) -> int:
    """The first of `count` consecutive ports that are all free right now (the local store
    listens on s3_port and the seven after it, see settings.store_ports)."""
    for _ in range(tries):
        base = free_port(host)
        if base + count - 1 <= 65535 and all(
            port_is_free(p, host) for p in range(base + 1, base + count)
        ):
            return base
    raise ServiceError(f"no block of {count} free consecutive ports found on {host}")


def pid_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (exited, not yet reaped) counts as gone."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def port_holder(port: int, host: str = "127.0.0.1") -> str:
    """Who listens on host:port, as 'pid N (name)' when this user may see it, else ''."""
    with contextlib.suppress(psutil.Error, OSError):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status != psutil.CONN_LISTEN or not conn.laddr or conn.laddr.port != port:
                continue
            if conn.laddr.ip not in (host, "0.0.0.0", "::", "::ffff:" + host):
                continue
            if conn.pid is None:
                return "another user's process"
            with contextlib.suppress(psutil.Error):
                return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
            return f"pid {conn.pid}"
    return ""


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when a GET of `url` answers 2xx (redirects followed) within `timeout` seconds.
    Health URLs are loopback ones, so no proxy from the environment applies."""
    try:
        resp = httpx.get(url, timeout=timeout, follow_redirects=True, trust_env=False)
    except (httpx.HTTPError, OSError):
        return False
    return resp.is_success


def wait_until(done: Callable[[], bool], timeout: float, interval: float) -> bool:
    """Call `done` every `interval` seconds until it returns True (-> True) or `timeout`
    seconds have passed (-> False). An exception from `done` ends the wait and propagates."""
    retrying = Retrying(
        stop=stop_after_delay(timeout),
        wait=wait_fixed(interval),
        retry=retry_if_result(lambda ok: not ok),
        retry_error_callback=lambda _state: False,
    )
    return retrying(done)


def read_pid_file(path: Path) -> int | None:
    """The pid recorded in `path`, or None when the file is missing or not a number."""
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


@dataclass
class ManagedProcess:
    """One named background service: command, pid file, log file, health check."""

    name: str
    argv: Sequence[str]
    run_dir: Path
    log_dir: Path
    port: int
    health: Callable[[], bool]
    env: dict[str, str] | None = None
    host: str = "127.0.0.1"
    # (local store) further ports the service listens on, checked before it starts
    extra_ports: Sequence[int] = ()
    # seconds a SIGTERM may take before SIGKILL (SeaweedFS drains for ~15 s, see object_store)
    stop_grace: float = 10.0

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        pid = read_pid_file(self.pid_file)
        return pid if pid is not None and pid_alive(pid) else None

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, timeout: float = 90.0) -> int:
        """Start unless already running and healthy; wait until healthy or fail clearly."""
        pid = self.pid()
        if pid is not None:
            if self.health():
                return pid
            self.stop()
        self.pid_file.unlink(missing_ok=True)
        self.check_ports()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **(self.env or {})}
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(  # noqa: S603 - argv built by us
                list(self.argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        self._wait_healthy(proc, timeout)
        return proc.pid

    def check_ports(self) -> None:
        """Fail naming the first port another process holds (and who holds it, if visible)."""
        for port in (self.port, *self.extra_ports):
            if not port_is_free(port, self.host):
                holder = port_holder(port, self.host)
                raise ServiceError(
                    f"{self.name}: port {self.host}:{port} is already in use"
                    f"{f' by {holder}' if holder else ' by another process'}; stop it or "
                    f"choose other ports (see helper/settings.py)"
                )

    def _wait_healthy(self, proc: subprocess.Popen, timeout: float) -> None:
        def healthy() -> bool:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise ServiceError(
                    f"{self.name} exited with code {proc.returncode} during start-up; "
                    f"last log lines:\n{self.tail_log()}"
                )
            return self.health()

        if wait_until(healthy, timeout, interval=0.25):
            return
        self.stop()
        raise ServiceError(
            f"{self.name} not healthy after {timeout:.0f}s; last log lines:\n{self.tail_log()}"
        )

    def stop(self, grace: float | None = None) -> bool:
        """Signal the whole process group and wait until every member has exited;
        escalate to SIGKILL after `grace` seconds (default: the service's stop_grace)."""
        grace = self.stop_grace if grace is None else grace
        pid = self.pid()
        if pid is None:
            # (hardening) The leader may have crashed or been SIGKILLed while its children
            # (e.g. MLflow's uvicorn) live on in its process group, holding the port: stop
            # them too. A pgid cannot be reused while any member lives, so this is safe.
            recorded = read_pid_file(self.pid_file)
            if recorded is not None and _group_alive(recorded):
                pid = recorded
        self.pid_file.unlink(missing_ok=True)
        if pid is None:
            return False
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
            if wait_until(lambda: not _group_alive(pid), wait, interval=0.1):
                return True
        return True

    def tail_log(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def _group_alive(pgid: int) -> bool:
    """True while any process of the group still runs (reaps our own zombies on the way)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(-pgid, os.WNOHANG)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return any(pid_alive(pid) for pid in _group_members(pgid))


def _group_members(pgid: int) -> list[int]:
    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(proc.pid) == pgid:
                members.append(proc.pid)
    return members
