"""The `.env.best_run` contract: the one file that names the model to promote and serve.

`ml_platform.register` writes it, serving, promotion, the stack check, the summary and the
promote workflow read it (the workflow with `source`, so values must survive a shell: no
quotes, newlines or edge whitespace). Keys and the reader/writer live here once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values

from helper.atomic import atomic_write
from helper.errors import PlatformError

ENV_KEYS = (
    "MODEL_NAME",
    "MODEL_VERSION",
    "MODEL_ID",
    "RUN_ID",
    "STORAGE_URI",
    "METRIC_NAME",
    "METRIC_VALUE",
    "EXPERIMENT_NAME",
)
REQUIRED = ("MODEL_NAME", "MODEL_VERSION", "STORAGE_URI")
_ENV_KEY = re.compile(r"^[A-Z_][A-Z0-9_]*$")


class BestRunError(PlatformError, ValueError):
    """The file is missing, incomplete, or a value cannot be written safely."""


def format_env(values: Mapping[str, object]) -> str:
    """KEY=VALUE lines; refuses keys or values that a shell or kustomize would misread."""
    lines = []
    for key, value in values.items():
        text = str(value)
        if not _ENV_KEY.match(key):
            raise BestRunError(f"{key}: not a valid environment variable name")
        if any(ch in text for ch in "\n\r\"'") or text != text.strip():
            raise BestRunError(f"{key}: value {text!r} has quotes, newlines or edge whitespace")
        lines.append(f"{key}={text}")
    return "\n".join(lines) + "\n"


def write_best_run(path: Path, values: Mapping[str, object]) -> Path:
    """Atomically: a reader (a running promotion, `serve:up`) never sees half a file."""
    return atomic_write(Path(path), format_env(values))


def read_best_run(path: Path) -> dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise BestRunError(f"{path} not found: run `task ml:register` first")
    values = {k: v for k, v in dotenv_values(path).items() if v is not None}
    missing = [k for k in REQUIRED if not values.get(k)]
    if missing:
        raise BestRunError(f"{path}: missing {', '.join(missing)}")
    return values
