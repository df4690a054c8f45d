"""Which sockets do our local processes listen on, and is any of them reachable from outside?

Every local server must bind 127.0.0.1 (or ::1): a laptop on a café network must
not expose MLflow, S3 or a predictor. This lists the listening TCP sockets (and
bound UDP sockets) of the process trees we started — the pid files under
`settings.run_dir`, children included, since MLflow's uvicorn or Ray's workers are
children — and reports every one that is not on a loopback address.

Run: `python -m ops.exposure [--pid PID ...]` (exit 1 when something is exposed).
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from helper.errors import run_cli
from helper.settings import Settings, get_settings


@dataclass(frozen=True)
class Listener:
    pid: int
    process: str
    protocol: str  # tcp | udp
    address: str
    port: int

    @property
    def loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.address.split("%")[0]).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        where = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.process}({self.pid}) {self.protocol} {where}:{self.port}"


def service_pids(run_dir: Path) -> dict[str, int]:
    """Pids recorded by helper.processes (`<run_dir>/<service>.pid`), live ones only."""
    out = {}
    for pid_file in sorted(run_dir.glob("*.pid")):
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            continue
        if psutil.pid_exists(pid):
            out[pid_file.stem] = pid
    return out


def process_tree(roots: Iterable[int]) -> list[psutil.Process]:
    """The root processes and all their descendants (vanished ones skipped)."""
    seen: dict[int, psutil.Process] = {}
    for pid in roots:
        try:
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                seen.setdefault(proc.pid, proc)
        except psutil.NoSuchProcess:
            continue
    return list(seen.values())


def _connections(proc: psutil.Process):
    # psutil >= 6 renamed connections() to net_connections()
    getter = getattr(proc, "net_connections", None) or proc.connections
    return getter(kind="inet")


def listeners(roots: Iterable[int]) -> list[Listener]:
    """Listening TCP and bound, unconnected UDP sockets of the trees under `roots`."""
    found = set()
    for proc in process_tree(roots):
        try:
            name = proc.name()
            conns = _connections(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for c in conns:
            tcp = c.type == socket.SOCK_STREAM
            if (tcp and c.status != psutil.CONN_LISTEN) or (not tcp and (c.raddr or not c.laddr)):
                continue
            found.add(Listener(proc.pid, name, "tcp" if tcp else "udp", c.laddr.ip, c.laddr.port))
    return sorted(found, key=lambda x: (x.pid, x.protocol, x.port))


def exposed(roots: Iterable[int]) -> list[Listener]:
    """The listeners not bound to a loopback address (0.0.0.0 and :: count as exposed)."""
    return [x for x in listeners(roots) if not x.loopback]


def local_report(settings: Settings, extra_pids: Sequence[int] = ()) -> dict:
    services = service_pids(settings.run_dir)
    roots = [*services.values(), *extra_pids]
    all_ = listeners(roots)
    return {
        "services": services,
        "listeners": [str(x) for x in all_],
        "exposed": [str(x) for x in all_ if not x.loopback],
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="List our local processes' listening sockets")
    p.add_argument("--pid", type=int, action="append", default=[], help="extra process tree")
    args = p.parse_args(argv)
    report = local_report(get_settings(), args.pid)
    for line in report["listeners"]:
        print(line)
    for line in report["exposed"]:
        print(f"EXPOSED (not loopback): {line}", file=sys.stderr)
    return 1 if report["exposed"] else 0


if __name__ == "__main__":
    run_cli(main)
