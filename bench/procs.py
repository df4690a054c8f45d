"""Run a command and sample the memory of every process it starts, daemons included.

Services started by the platform detach into their own sessions (so a stop signals the
whole group), which takes them out of the parent's process tree. Every process inherits
its environment, though, so a unique `BENCH_TAG` value in the child's environment finds
all of them: the task runner, uv, Python, the JVM, Ray workers, MLflow, the object store (weed),
predictors.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

TAG_VAR = "BENCH_TAG"


def new_tag() -> str:
    return uuid.uuid4().hex


def tagged_processes(tag: str) -> list[psutil.Process]:
    """Live processes whose environment carries BENCH_TAG=tag (needs read access to environ)."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error, OSError):
            if proc.environ().get(TAG_VAR) == tag:
                found.append(proc)
    return found


def tree_rss(root: psutil.Process) -> int:
    """Resident bytes of a process and all its descendants."""
    total = 0
    procs = [root]
    with contextlib.suppress(psutil.Error):
        procs += root.children(recursive=True)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


class RssSampler:
    """Background thread recording the summed RSS of a set of processes every `interval` s.

    `source` returns the processes to sum at each tick (a tree, or everything tagged).
    """

    def __init__(self, source, interval: float = 0.25):
        self._source = source
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.peak = 0
        self.peak_procs = 0
        self.samples = 0
        self.cpu: dict[int, float] = {}  # pid -> user+system seconds at its last sample
        self.names: dict[int, str] = {}  # pid -> process name, for CPU per program
        self.peak_by_name: dict[str, int] = {}  # process name (e.g. "weed") -> peak summed RSS

    def _loop(self) -> None:
        while not self._stop.is_set():
            total = 0
            by_name: dict[str, int] = {}
            procs = self._source()
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    rss = p.memory_info().rss
                    total += rss
                    by_name[p.name()] = by_name.get(p.name(), 0) + rss
                    times = p.cpu_times()
                    self.cpu[p.pid] = times.user + times.system
                    self.names[p.pid] = p.name()
            for name, rss in by_name.items():
                self.peak_by_name[name] = max(rss, self.peak_by_name.get(name, 0))
            if total > self.peak:
                self.peak, self.peak_procs = total, len(procs)
            self.samples += 1
            self._stop.wait(self._interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def cpu_s(self) -> float:
        """CPU seconds of every sampled process (each up to its last sample: a machine shared
        with other work inflates wall time far more than it inflates this)."""
        return sum(self.cpu.values())

    def cpu_by_name(self) -> dict[str, float]:
        """CPU seconds per program name (e.g. what the object store cost beside the rest)."""
        out: dict[str, float] = {}
        for pid, seconds in self.cpu.items():
            name = self.names.get(pid, "?")
            out[name] = out.get(name, 0.0) + seconds
        return out


@dataclass
class CommandRun:
    """What one measured command did."""

    argv: list[str]
    returncode: int
    wall_s: float
    peak_rss_bytes: int
    peak_processes: int
    log: Path
    tag: str = ""
    tail: list[str] = field(default_factory=list)
    marks: list[tuple[float, str]] = field(default_factory=list)  # (seconds, line) of interest
    cpu_s: float = 0.0
    peak_by_name: dict[str, int] = field(default_factory=dict)
    cpu_by_name: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def as_dict(self) -> dict:
        return {
            "argv": self.argv,
            "returncode": self.returncode,
            "wall_s": round(self.wall_s, 3),
            "peak_rss_mib": round(self.peak_rss_bytes / 2**20, 1),
            "peak_processes": self.peak_processes,
            "cpu_s": round(self.cpu_s, 3),
            "log": str(self.log),
        }


def run_measured(
    argv: Sequence[str],
    *,
    log: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 3600.0,
    interval: float = 0.25,
    tag: str | None = None,
    mark_prefix: str | tuple[str, ...] | None = None,
) -> CommandRun:
    """Run `argv` to completion (stdout+stderr to `log`), timing it and sampling the peak RSS
    of every process that carries this run's tag. On timeout the tagged processes are killed.
    Output lines starting with `mark_prefix` are recorded with the second they appeared."""
    tag = tag or new_tag()
    full_env = {**os.environ, **(env or {}), TAG_VAR: tag}
    log.parent.mkdir(parents=True, exist_ok=True)
    marks: list[tuple[float, str]] = []
    with open(log, "wb") as out, RssSampler(lambda: tagged_processes(tag), interval) as sampler:
        started = time.perf_counter()
        proc = subprocess.Popen(  # noqa: S603 - argv built by the bench
            list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=full_env, cwd=cwd,
        )  # fmt: skip
        reader = threading.Thread(
            target=_copy_output, args=(proc, out, started, mark_prefix, marks), daemon=True
        )
        reader.start()
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_tagged(tag)
            code = proc.wait()
        wall = time.perf_counter() - started
        reader.join(timeout=10)
    tail = log.read_text(errors="replace").splitlines()[-15:]
    return CommandRun(
        list(argv), code, wall, sampler.peak, sampler.peak_procs, log, tag, tail, marks,
        sampler.cpu_s, sampler.peak_by_name, sampler.cpu_by_name(),
    )  # fmt: skip


_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # go-task colours its lines even into a pipe


def _copy_output(proc, out, started: float, prefix: str | None, marks: list) -> None:
    for raw in iter(proc.stdout.readline, b""):
        out.write(raw)
        if prefix:
            line = _ANSI.sub("", raw.decode(errors="replace")).rstrip()
            if line.startswith(prefix):
                marks.append((round(time.perf_counter() - started, 2), line))
    out.flush()


def kill_tagged(tag: str, grace: float = 10.0) -> int:
    """Stop every process this bench started under `tag` (SIGTERM, then SIGKILL); returns count.

    Only processes carrying our own unique tag are touched, never anything by name."""
    procs = tagged_processes(tag)
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()
    return len(procs)
