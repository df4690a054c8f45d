"""Run an entry point as its pod would, without Docker: `Sandbox`.

The manifest's env, a non-root uid, a read-only copy of exactly the files the image COPYs
(`helper.image_contract.image_files`) as the working directory, and writable directories
only where the pod mounts emptyDirs. Apart from the static checks in `helper.image_contract`
because this is the part that copies files, builds an interpreter and starts processes;
tests/integration/test_runtime_contracts.py uses it.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from helper.image_contract import (
    INTERPRETER_ENV,
    ContractError,
    ImageSpec,
    image_files,
    parse_dockerfile,
)
from helper.settings import REPO_ROOT


def _interpreter_for(uid: int, gid: int, work: Path) -> str:
    """A Python with this environment's packages, but not this repo, that `uid` can run.

    Always a fresh venv (of this interpreter's base, or of the system's python3 of the same
    minor version when the base lives where only root can enter, e.g. /root/.pyenv) that
    reads this environment's site-packages through a plain .pth line. A path added that way
    does not process its own .pth files, so the repo's editable install stays out and the
    entry point sees only the image's copy of the code.
    """
    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    base = Path(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))
    candidates = [base, Path(f"/usr/bin/python{minor}")]
    paths = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    for i, candidate in enumerate(candidates):
        if not candidate.exists() or not _open_to_all(candidate):
            continue
        venv = work / f"python{i}"
        subprocess.run([str(candidate), "-m", "venv", "--without-pip", str(venv)], check=True)
        site = venv / "lib" / f"python{minor}" / "site-packages"
        (site / "outer-env.pth").write_text("\n".join(paths) + "\n")
        if _can_run(uid, gid, str(venv / "bin" / "python")):
            return str(venv / "bin" / "python")
    raise ContractError(
        f"no Python {minor} that uid {uid} can execute (tried {[str(c) for c in candidates]})"
    )


def _open_to_all(path: Path) -> bool:
    """Every directory on the way to the real file searchable, the file readable, by anyone
    (Ray and others re-resolve and read the interpreter, not only exec it)."""
    real = Path(os.path.realpath(path))
    dirs_ok = all(p.stat().st_mode & stat.S_IXOTH for p in real.parents)
    return dirs_ok and bool(real.stat().st_mode & stat.S_IROTH)


def _can_run(uid: int, gid: int, python: str) -> bool:
    proc = subprocess.run(
        [*_setpriv(uid, gid), python, "-c", "import pydantic"],
        capture_output=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": "/"},
    )
    return proc.returncode == 0


def _setpriv(uid: int, gid: int) -> list[str]:
    if os.geteuid() != 0:
        if os.geteuid() != uid:
            raise ContractError(f"cannot switch to uid {uid} without root")
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise ContractError("setpriv (util-linux) is needed to run as the manifest's user")
    return [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]


def _work_root() -> str | None:
    for candidate in ("/var/tmp",):
        if os.path.isdir(candidate) and os.access(candidate, os.W_OK):
            return candidate
    return None


def _read_only(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        mode = p.stat().st_mode
        p.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


@dataclass
class Sandbox:
    """One image's file system as the pod sees it, mapped onto host directories."""

    work: Path
    uid: int
    gid: int
    image: ImageSpec
    python: str = ""
    paths: dict[str, Path] = field(default_factory=dict)  # container path -> host path

    @classmethod
    def build(
        cls,
        dockerfile: Path,
        uid: int,
        gid: int,
        writable: Iterable[str] = (),
        root: Path = REPO_ROOT,
    ) -> Sandbox:
        """Copy what the image COPYs (read-only) and make `writable` mount points owned by
        the uid. Lives in a fresh directory the uid can enter; `remove()` deletes it."""
        # not under /tmp: pods mount their own /tmp, and a host path there would look like one;
        # short names: Ray's socket paths under TMPDIR must stay below 108 bytes
        work = Path(tempfile.mkdtemp(prefix="ic-", dir=_work_root()))
        work.chmod(0o755)
        spec = parse_dockerfile(dockerfile)
        box = cls(work, uid, gid, spec)
        image = work / "image"
        files = image_files(spec, root)
        for dest, src in files.items():
            target = image / dest.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
        (image / spec.workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
        _read_only(image)
        tops = {"/" + PurePosixPath(d).parts[1] for d in [*files, spec.workdir] if d != "/"}
        for top in tops:
            box.paths[top] = image / top.lstrip("/")
        for mount in writable:
            box.paths[mount.rstrip("/")] = box.directory(f"m{len(box.paths)}")
        box.python = _interpreter_for(uid, gid, work)
        return box

    def directory(self, name: str, writable: bool = True) -> Path:
        """A host directory inside the sandbox, owned by the uid when `writable`."""
        path = self.work / name
        path.mkdir(parents=True, exist_ok=True)
        if writable and os.geteuid() == 0:
            os.chown(path, self.uid, self.gid)
        return path

    def mount(self, container_path: str, host: Path) -> None:
        """Map a container path (a model dir, a ConfigMap) onto a host directory."""
        self.paths[container_path.rstrip("/")] = Path(host)

    def remove(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)

    def host(self, path: str) -> str:
        """Where a container path lives on the host (longest mapped prefix wins)."""
        best = max(
            (p for p in self.paths if path == p or path.startswith(p.rstrip("/") + "/")),
            key=len,
            default=None,
        )
        if best is None:
            return path
        rest = path[len(best) :].lstrip("/")
        return str(self.paths[best] / rest) if rest else str(self.paths[best])

    def _map_value(self, value: str) -> str:
        if not value.startswith("/"):
            return value
        return ":".join(self.host(p) if p.startswith("/") else p for p in value.split(":"))

    def env(
        self, manifest_env: Mapping[str, str], host_env: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """Image ENV, then the manifest's env, container paths mapped to host paths, then
        `host_env` as given (paths already on the host). PATH is the sandbox interpreter's;
        TMPDIR the /tmp mount when the pod has one."""
        out = {"LANG": "C.UTF-8", "PATH": f"{Path(self.python).parent}:/usr/bin:/bin"}
        if os.environ.get("JAVA_HOME"):
            out["JAVA_HOME"] = os.environ["JAVA_HOME"]
        for source in (self.image.env, manifest_env):
            for key, value in source.items():
                if key in INTERPRETER_ENV:  # the image's Python = the sandbox's
                    out[key] = self.python
                elif key != "PATH":
                    out[key] = self._map_value(value)
        if "/tmp" in self.paths:
            out["TMPDIR"] = str(self.paths["/tmp"])
        return {**out, **(host_env or {})}

    def argv(self, command: Iterable[str]) -> list[str]:
        """The command with `python` as the sandbox interpreter and container paths mapped."""
        cmd = [self._map_arg(c) for c in command]
        if cmd and cmd[0] in {"python", "python3"}:
            cmd[0] = self.python
        return [*_setpriv(self.uid, self.gid), *cmd]

    def _map_arg(self, arg: str) -> str:
        flag, eq, value = arg.partition("=")
        if eq and flag.startswith("-") and value.startswith("/"):
            return f"{flag}={self._map_value(value)}"  # --model_dir=/mnt/models
        return self._map_value(arg)

    def run(
        self, command: Iterable[str], env: Mapping[str, str], timeout: float
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.argv(command),
            env=dict(env),
            cwd=self.host(self.image.workdir),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def popen(self, command: Iterable[str], env: Mapping[str, str], log: Path):
        with open(log, "wb") as fh:
            return subprocess.Popen(
                self.argv(command),
                env=dict(env),
                cwd=self.host(self.image.workdir),
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
