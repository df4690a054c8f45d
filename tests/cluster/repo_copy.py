"""A copy of what a commit would carry, for tests that let tasks or kustomize write files."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from helper.settings import REPO_ROOT

SKIP = ("bench/results/", "data/", ".github/")


def copy_repo(dest: Path) -> Path:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for name in files:
        src = REPO_ROOT / name
        if src.is_file() and not name.startswith(SKIP):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest
