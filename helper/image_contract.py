"""What a container meets at run time, checked without Docker.

Schemas see one object's shape; a pod fails on other things: a module its image does not
contain, an interpreter other than the one the packages went into, a write under a read-only
root. This module reads a Dockerfile's final stage (COPY list, ENV, WORKDIR, USER), follows the
repo's imports from an entry point, and runs an entry point the way its rendered manifest
would: the manifest's env, a non-root uid, a read-only copy of exactly the files the image
COPYs as the working directory, and writable directories only where the pod mounts emptyDirs.
The tests in tests/unit/test_image_contents.py and tests/integration/test_runtime_contracts.py
use it; nothing here starts a cluster or an image.
"""

from __future__ import annotations

import ast
import fnmatch
import os
import shlex
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from helper.errors import PlatformError
from helper.settings import REPO_ROOT, Settings

REPO_PACKAGES = ("helper", "data_platform", "ml_platform", "inference_service")
# env names whose value says where MLflow / S3 are; the local stack replaces them
TRACKING_ENV = ("MLFLOW_TRACKING_URI", "MLP_TRACKING_URI")
S3_ENDPOINT_ENV = ("MLP_S3_ENDPOINT_URL", "MLFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL")
INTERPRETER_ENV = ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")


class ContractError(PlatformError, RuntimeError):
    """A manifest or Dockerfile the checks cannot interpret; the message says which part."""


# --- Dockerfile ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageSpec:
    """The final stage of a Dockerfile, as far as the run time is concerned."""

    copies: tuple[tuple[str, str], ...]  # (source in the build context, absolute destination)
    env: dict[str, str]
    workdir: str
    user: str | None
    runs: tuple[str, ...]  # RUN commands, continuation lines joined


def _instructions(text: str) -> list[tuple[str, str]]:
    out, buf = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def parse_dockerfile(path: Path) -> ImageSpec:
    """COPY (from the build context only), ENV, WORKDIR, USER and RUN of the last stage."""
    instructions = _instructions(Path(path).read_text(encoding="utf-8"))
    starts = [i for i, (word, _) in enumerate(instructions) if word == "FROM"]
    if not starts:
        raise ContractError(f"{path}: no FROM")
    copies, env, runs = [], {}, []
    workdir, user = "/", None
    for word, rest in instructions[starts[-1] + 1 :]:
        if word == "COPY":
            parts = shlex.split(rest)
            if any(p.startswith("--from") for p in parts):
                continue
            parts = [p for p in parts if not p.startswith("--")]
            *sources, dest = parts
            if not dest.startswith("/"):
                dest = str(PurePosixPath(workdir) / dest)
            copies += [(src, dest) for src in sources]
        elif word == "ENV":
            parts = shlex.split(rest)
            if parts and "=" not in parts[0]:  # legacy `ENV KEY value`
                env[parts[0]] = " ".join(parts[1:])
            else:
                env.update(p.split("=", 1) for p in parts)
        elif word == "WORKDIR":
            workdir = str(PurePosixPath(workdir) / rest)
        elif word == "USER":
            user = rest
        elif word == "RUN":
            runs.append(rest)
    return ImageSpec(tuple(copies), env, workdir, user, tuple(runs))


def dockerignore(root: Path = REPO_ROOT) -> list[str]:
    path = root / ".dockerignore"
    if not path.is_file():
        return []
    lines = (ln.strip() for ln in path.read_text(encoding="utf-8").splitlines())
    return [ln for ln in lines if ln and not ln.startswith("#")]


def ignored(rel: str, patterns: Iterable[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        if any(fnmatch.fnmatchcase(p, pat) for p in prefixes):
            verdict = not negate
    return verdict


def image_files(spec: ImageSpec, root: Path = REPO_ROOT) -> dict[str, Path]:
    """Absolute path in the image -> file in the repo, for every file the COPYs bring in."""
    patterns = dockerignore(root)
    out: dict[str, Path] = {}
    for src, dest in spec.copies:
        source = root / src
        if source.is_file():
            target = dest if not dest.endswith("/") else dest + source.name
            if not ignored(src.rstrip("/"), patterns):
                out[target] = source
            continue
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            rel = path.relative_to(root).as_posix()
            if not ignored(rel, patterns):
                out[str(PurePosixPath(dest) / path.relative_to(source).as_posix())] = path
    return out


# --- imports -------------------------------------------------------------------------------


def _module_path(module: str, root: Path) -> Path | None:
    base = root / module.replace(".", "/")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def import_closure(
    entry: Iterable[str], root: Path = REPO_ROOT, packages: Iterable[str] = REPO_PACKAGES
) -> dict[str, Path]:
    """Every repo module `entry` can import, including imports inside functions (the code
    imports heavy modules lazily, and a pod fails on those just the same)."""
    packages = tuple(packages)
    seen: dict[str, Path] = {}
    todo = list(entry)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        path = _module_path(module, root)
        if path is None:
            continue  # a name imported from a module (`from pkg.mod import func`)
        seen[module] = path
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            for name in names:
                if name.split(".")[0] in packages:
                    parts = name.split(".")
                    todo += [".".join(parts[: i + 1]) for i in range(len(parts))]
    return seen


def missing_from_image(entry: Iterable[str], spec: ImageSpec, root: Path = REPO_ROOT) -> list[str]:
    """Repo modules the entry point imports that the image's COPY list leaves out."""
    shipped = {p.resolve() for p in image_files(spec, root).values()}
    return sorted(m for m, p in import_closure(entry, root).items() if p.resolve() not in shipped)


# --- manifests -----------------------------------------------------------------------------


def container(pod_spec: dict, name: str | None = None) -> dict:
    containers = pod_spec.get("containers") or []
    found = [c for c in containers if name is None or c.get("name") == name]
    if not found:
        raise ContractError(f"no container {name!r} in the pod spec")
    return found[0]


def container_env(
    c: dict,
    secrets: Mapping[tuple[str, str], str],
    field_refs: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The env a container gets: literal values, Secret keys from `secrets` (name, key), and
    fieldRefs from `field_refs`. A reference nobody provided is an error, not a blank."""
    out: dict[str, str] = {}
    for item in c.get("env") or []:
        name = item["name"]
        if "value" in item:
            out[name] = str(item["value"])
            continue
        ref = item.get("valueFrom") or {}
        if "secretKeyRef" in ref:
            key = (ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"])
            if key not in secrets:
                if ref["secretKeyRef"].get("optional"):
                    continue
                raise ContractError(f"env {name}: Secret {key[0]} key {key[1]} not provided")
            out[name] = secrets[key]
        elif "fieldRef" in ref:
            path = ref["fieldRef"]["fieldPath"]
            if path not in (field_refs or {}):
                raise ContractError(f"env {name}: fieldRef {path} not provided")
            out[name] = field_refs[path]
        else:
            raise ContractError(f"env {name}: unsupported valueFrom {sorted(ref)}")
    return out


def emptydir_mounts(pod_spec: dict, c: dict) -> list[str]:
    """Mount paths of the container's emptyDir volumes: the only writable paths under a
    read-only root."""
    empty = {v["name"] for v in pod_spec.get("volumes") or [] if "emptyDir" in v}
    return [m["mountPath"] for m in c.get("volumeMounts") or [] if m["name"] in empty]


def run_as(pod_spec: dict, c: dict) -> tuple[int | None, int | None]:
    """(uid, gid) from the container's securityContext over the pod's."""
    sec = {**(pod_spec.get("securityContext") or {}), **(c.get("securityContext") or {})}
    return sec.get("runAsUser"), sec.get("runAsGroup")


def point_at_local_stack(env: Mapping[str, str], settings: Settings) -> dict[str, str]:
    """The manifest's env with the MLflow and S3 endpoints replaced by the local stack's;
    everything else (bucket, URIs, budgets, regions) stays as the manifest says."""
    out = dict(env)
    for name in TRACKING_ENV:
        if name in out:
            out[name] = settings.tracking_uri
    for name in S3_ENDPOINT_ENV:
        if name in out and settings.s3_endpoint_url:
            out[name] = settings.s3_endpoint_url
    return out


def local_secrets(settings: Settings, extra: Mapping[tuple[str, str], str] | None = None):
    """The `s3-credentials` Secret as the local stack would fill it, plus `extra`."""
    creds = settings.s3_credentials() or ("local-stack", "local-stack")
    out = {
        ("s3-credentials", "AWS_ACCESS_KEY_ID"): creds[0],
        ("s3-credentials", "AWS_SECRET_ACCESS_KEY"): creds[1],
    }
    return {**out, **(extra or {})}


# --- running -------------------------------------------------------------------------------


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
