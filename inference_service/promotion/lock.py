"""One promotion at a time: an advisory file lock under state_dir.

`flock` belongs to the open file, so the kernel drops it when the holder exits or
crashes: a killed promotion never leaves a stale lock behind. The holder writes who it
is into the file so the refused one can say what it is waiting for.
"""

from __future__ import annotations

import fcntl
import json
import os
from datetime import UTC, datetime
from pathlib import Path


class PromotionLocked(RuntimeError):
    """Another promotion holds the lock; the message names it."""


class PromotionLock:
    def __init__(self, path: Path, what: str = ""):
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> PromotionLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(fd)
            os.close(fd)
            raise PromotionLocked(
                f"another promotion is in progress ({holder}); lock {self.path}. "
                "Wait for it to finish, then run again."
            ) from None
        os.ftruncate(fd, 0)
        info = {"pid": os.getpid(), "since": datetime.now(UTC).isoformat(), "what": self.what}
        os.write(fd, json.dumps(info).encode())
        self._fd = fd
        return self

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        except (OSError, ValueError):
            return "holder unknown"
        return f"pid {info.get('pid')} since {info.get('since')}: {info.get('what')}"

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> PromotionLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
