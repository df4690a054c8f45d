"""One promotion at a time: a `filelock.FileLock` under state_dir.

The lock is the kernel's `flock` on the lock file (filelock's Unix lock), which belongs to
the open file, so the kernel drops it when the holder exits or crashes: a killed promotion
never leaves a stale lock behind. The holder writes who it is into a file beside the lock
(`<lock>.holder`; the lock file itself is filelock's) so the refused one can say what it
is waiting for.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock, Timeout

from helper.errors import PlatformError


class PromotionLocked(PlatformError, RuntimeError):
    """Another promotion holds the lock; the message names it."""


class PromotionLock:
    def __init__(self, path: Path, what: str = ""):
        self.path = Path(path)
        self.what = what
        self.holder_file = self.path.with_name(self.path.name + ".holder")
        # timeout=0: one attempt, then Timeout (never wait behind another promotion)
        self._lock = FileLock(str(self.path), timeout=0)

    def acquire(self) -> PromotionLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            raise PromotionLocked(
                f"another promotion is in progress ({self._holder()}); lock {self.path}. "
                "Wait for it to finish, then run again."
            ) from None
        info = {"pid": os.getpid(), "since": datetime.now(UTC).isoformat(), "what": self.what}
        self.holder_file.write_text(json.dumps(info))
        return self

    def _holder(self) -> str:
        try:
            info = json.loads(self.holder_file.read_text() or "{}")
        except (OSError, ValueError):
            return "holder unknown"
        return f"pid {info.get('pid')} since {info.get('since')}: {info.get('what')}"

    def release(self) -> None:
        if self._lock.is_locked:
            self.holder_file.unlink(missing_ok=True)
            self._lock.release()

    def __enter__(self) -> PromotionLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
