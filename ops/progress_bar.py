"""A progress bar for a running tuning session: trials done / total and the best so far.

The session's driver rewrites a small JSON file after every trial event
(`ml_platform.progress`); this watcher polls it from the pipeline runner, so the bar works the
same whether Ray runs here or elsewhere, without parsing Ray's console output. tqdm switches
itself off when the output is not a terminal (logs, CI), which keeps captured output clean.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import IO

from tqdm import tqdm

from helper.settings import Settings

POLL_S = 0.5


def update_bar(bar: tqdm, progress: dict) -> None:
    """Bring `bar` to what the progress file says."""
    if progress.get("total") and bar.total != progress["total"]:
        bar.total = progress["total"]
    bar.n = int(progress.get("done") or 0)
    best = progress.get("best")
    postfix = {"running": progress.get("running", 0)}
    if best is not None:
        postfix[f"best {progress.get('metric', '')}".strip()] = f"{best:.4f}"
    bar.set_postfix(postfix, refresh=False)
    bar.refresh()


@contextlib.contextmanager
def watch_tuning(
    settings: Settings, enabled: bool = True, file: IO[str] | None = None,
    disable: bool | None = None,
) -> Iterator[None]:  # fmt: skip
    """While the body runs, show the session's progress; the stale file of a previous session
    is removed first so the bar never starts at its figures."""
    from ml_platform.progress import progress_path, read_progress

    if not enabled:
        yield
        return
    path = progress_path(settings.run_dir)
    path.unlink(missing_ok=True)
    stop = threading.Event()
    bar = tqdm(total=None, desc="tuning", unit="trial", file=file or sys.stderr, disable=disable,
               leave=False, dynamic_ncols=True)  # fmt: skip

    def poll() -> None:
        while not stop.wait(POLL_S):
            progress = read_progress(path)
            if progress:
                update_bar(bar, progress)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
        bar.close()
