"""Write a file so that readers see the old content or the new, never half of either.

A temp file in the target's directory (same filesystem, so the rename is atomic), flushed and
fsynced, then renamed over the target. mkstemp creates it 0600 whatever the umask, so a file
holding a secret is never readable by others, not even for a moment; `mode` widens it after.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, text: str, mode: int = 0o644, dir_mode: int = 0o755) -> Path:
    path = Path(path)
    path.parent.mkdir(mode=dir_mode, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
