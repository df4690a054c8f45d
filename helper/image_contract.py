"""What a container meets at run time, checked without Docker.

Schemas see one object's shape; a pod fails on other things: a module its image does not
contain, an interpreter other than the one the packages went into, a write under a read-only
root. This module reads a Dockerfile's final stage (COPY list, ENV, WORKDIR, USER), follows the
repo's imports from an entry point, and reads a pod spec's container, env, user and emptyDir
mounts; `helper.image_sandbox` runs an entry point the way its rendered manifest would.
The tests in tests/cluster/test_image_contents.py and tests/integration/test_runtime_contracts.py
use it; nothing here starts a cluster or an image.
"""

from __future__ import annotations

import ast
import fnmatch
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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
