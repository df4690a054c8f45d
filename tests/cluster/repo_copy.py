"""A copy of what a commit would carry, for tests that let tasks or kustomize write files."""

from __future__ import annotations

import shutil
from pathlib import Path

from helper.settings import REPO_ROOT
from tests.unit.test_repo_hygiene import repo_files

SKIP = ("bench/results/", "data/", ".github/")


def copy_repo(dest: Path) -> Path:
    for name in repo_files():
        if not name.startswith(SKIP):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, dest / name)
    return dest
