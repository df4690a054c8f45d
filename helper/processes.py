"""Background processes tracked by pid files.

Local services (S3, MLflow, predictors, HAProxy, Prometheus) are started in their own
session so that stopping one signals its whole process group: MLflow's web
workers and any other children go with it, and nothing is orphaned.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


class ServiceError(RuntimeError):
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


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback URL
            return 200 <= resp.status < 300
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


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

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if pid_alive(pid) else None

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
        if not port_is_free(self.port, self.host):
            raise ServiceError(
                f"{self.name}: port {self.host}:{self.port} is already in use by another "
                f"process; stop it or choose another port (see helper/settings.py)"
            )
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

    def _wait_healthy(self, proc: subprocess.Popen, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise ServiceError(
                    f"{self.name} exited with code {proc.returncode} during start-up; "
                    f"last log lines:\n{self.tail_log()}"
                )
            if self.health():
                return
            time.sleep(0.25)
        self.stop()
        raise ServiceError(
            f"{self.name} not healthy after {timeout:.0f}s; last log lines:\n{self.tail_log()}"
        )

    def stop(self, grace: float = 10.0) -> bool:
        """Signal the whole process group; escalate to SIGKILL after `grace` seconds."""
        pid = self.pid()
        if pid is None:
            # (hardening) The leader may have crashed or been SIGKILLed while its children
            # (e.g. MLflow's uvicorn) live on in its process group, holding the port: stop
            # them too. A pgid cannot be reused while any member lives, so this is safe.
            with contextlib.suppress(FileNotFoundError, ValueError):
                recorded = int(self.pid_file.read_text().strip())
                if _group_alive(recorded):
                    pid = recorded
        self.pid_file.unlink(missing_ok=True)
        if pid is None:
            return False
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if not _group_alive(pid):
                    return True
                time.sleep(0.1)
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
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members
