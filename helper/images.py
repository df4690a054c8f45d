"""The image scheme: where the platform's images live and which tags may run on a cluster.

One committed place, `platform/images/kustomization.yaml` (a kustomize Component every overlay
lists), maps the bare names the manifests use (`etl`, `tune`, `predictor`) to
`<registry>/<name>:<tag>`. Tags are immutable: `sha-<40 hex>` (CI pushes one per commit on
main) or `v<version>` (CI pushes it from a release tag; committed overlays pin the version in
pyproject.toml). CI, the deploy tasks and the offline checks all read the scheme from here.

Only PyYAML and the standard library are imported at module level, so CI runs this with
`uv run --no-project --with pyyaml python -m helper.images ci …` without the project's env.

    python -m helper.images ci --name etl --event push --ref refs/heads/main --sha … --owner …
    python -m helper.images render <overlay> --env dev|prod     # IMAGE_TAG=… overrides the tag
    python -m helper.images registry-host
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from helper.errors import PlatformError, run_cli

REPO_ROOT = Path(__file__).resolve().parent.parent
COMPONENT = REPO_ROOT / "platform" / "images" / "kustomization.yaml"
PYPROJECT = REPO_ROOT / "pyproject.toml"
# sha-<full commit> from main, v<semver> from a release tag: nothing else is ever pushed.
IMMUTABLE_TAG = re.compile(r"^(sha-[0-9a-f]{40}|v\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?)$")
# The overlays that deploy the commit under test rather than the release.
COMMIT_ENVS = {"dev"}


class SchemeError(PlatformError, ValueError):
    """The image scheme is broken or a request does not fit it; the message says how to fix it."""


@dataclass(frozen=True)
class ImageScheme:
    registry: str  # e.g. ghcr.io/ml-platform: host plus owner, no trailing slash
    names: tuple[str, ...]  # bare names the manifests use, in component order
    release_tag: str  # v<version>, what committed overlays run

    @property
    def host(self) -> str:
        return self.registry.split("/", 1)[0]

    def repository(self, name: str) -> str:
        if name not in self.names:
            raise SchemeError(f"image '{name}' is not in {COMPONENT.name}: {list(self.names)}")
        return f"{self.registry}/{name}"


def load_scheme(path: Path = COMPONENT) -> ImageScheme:
    """Parse the images Component; every entry must share one registry and one tag."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    entries = doc.get("images") or []
    if not entries:
        raise SchemeError(f"{path}: no images")
    registries, tags = set(), set()
    for entry in entries:
        name, new_name = entry.get("name", ""), entry.get("newName", "")
        if not new_name.endswith(f"/{name}"):
            raise SchemeError(f"{path}: newName '{new_name}' must be <registry>/{name}")
        registries.add(new_name[: -len(name) - 1])
        tags.add(str(entry.get("newTag", "")))
    if len(registries) != 1 or len(tags) != 1:
        raise SchemeError(f"{path}: one registry and one tag expected, got {registries} {tags}")
    return ImageScheme(registries.pop(), tuple(e["name"] for e in entries), tags.pop())


def project_version(path: Path = PYPROJECT) -> str:
    return tomllib.loads(path.read_text(encoding="utf-8"))["project"]["version"]


def split_image(ref: str) -> tuple[str, str | None, str | None]:
    """`repo[:tag][@digest]` -> (repo, tag, digest); a port in the host is not a tag."""
    repo, _, digest = ref.partition("@")
    head, _, last = repo.rpartition("/")
    tag = None
    if ":" in last:
        last, tag = last.split(":", 1)
    return (f"{head}/{last}" if head else last), tag, (digest or None)


# --- images in rendered objects ------------------------------------------------------------------


@dataclass(frozen=True)
class ImageUse:
    where: str  # path inside the object, e.g. spec.template.spec.containers[0]
    image: str
    pull_policy: str | None


def iter_images(obj: object, where: str = "") -> Iterator[ImageUse]:
    """Every image an object names: containers (`image`) and Stackable's `sparkImage.custom`."""
    if isinstance(obj, dict):
        if isinstance(obj.get("image"), str):
            yield ImageUse(where or ".", obj["image"], obj.get("imagePullPolicy"))
        spark = obj.get("sparkImage")
        if isinstance(spark, dict) and isinstance(spark.get("custom"), str):
            yield ImageUse(f"{where}.sparkImage", spark["custom"], spark.get("pullPolicy"))
        for key, value in obj.items():
            if key != "sparkImage":
                yield from iter_images(value, f"{where}.{key}" if where else key)
    elif isinstance(obj, list):
        for i, item in enumerate(obj):
            yield from iter_images(item, f"{where}[{i}]")


def _set_images(obj: object, repos: set[str], tag: str) -> None:
    if isinstance(obj, dict):
        for holder, key in ((obj, "image"), (obj.get("sparkImage"), "custom")):
            if isinstance(holder, dict) and isinstance(holder.get(key), str):
                repo, _, _ = split_image(holder[key])
                if repo in repos:
                    holder[key] = f"{repo}:{tag}"
        for value in obj.values():
            _set_images(value, repos, tag)
    elif isinstance(obj, list):
        for item in obj:
            _set_images(item, repos, tag)


def retag(objs: Iterable[dict], scheme: ImageScheme, tag: str) -> list[dict]:
    """The objects with every image of the scheme's registry set to `tag` (in place)."""
    if not IMMUTABLE_TAG.match(tag):
        raise SchemeError(f"tag '{tag}' is not immutable (sha-<40 hex> or v<version>)")
    repos = {scheme.repository(n) for n in scheme.names}
    objs = list(objs)
    for obj in objs:
        _set_images(obj, repos, tag)
    return objs


# --- deploy-time tag -----------------------------------------------------------------------------


def commit_tag(repo: Path = REPO_ROOT) -> str:
    """`sha-<HEAD>`: the tag CI pushed for this commit (after its tests passed on main)."""
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if dirty:
        print(f"images: uncommitted changes are not in the images of {sha[:12]}", file=sys.stderr)
    return f"sha-{sha}"


def deploy_tag(env: str, override: str | None = None) -> str | None:
    """The tag an overlay is applied with: IMAGE_TAG, else the commit's for dev, else as pinned."""
    if override:
        return override
    return commit_tag() if env in COMMIT_ENVS else None


def render(overlay: Path, tag: str | None, scheme: ImageScheme | None = None) -> list[dict]:
    """The overlay as `kubectl apply` should get it: rendered, images set to `tag` if given."""
    from helper.validate import render as kustomize  # the project env only (not CI's `ci`)

    objs = kustomize(overlay)
    return retag(objs, scheme or load_scheme(), tag) if tag else objs


# --- CI ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CiPlan:
    image: str
    tags: tuple[str, ...]
    push: bool


def ci_plan(
    scheme: ImageScheme, name: str, *, event: str, ref: str, sha: str, owner: str, version: str
) -> CiPlan:
    """What CI builds for one image, and whether it pushes (main and release tags only)."""
    repo = scheme.repository(name)
    if not re.fullmatch(r"[0-9a-f]{40}", sha):
        raise SchemeError(f"sha '{sha}' is not a full commit hash")
    if event != "push" or not (ref == "refs/heads/main" or ref.startswith("refs/tags/v")):
        return CiPlan(repo, (f"{repo}:sha-{sha}",), False)
    expected = f"ghcr.io/{owner.lower()}"
    if scheme.registry.lower() != expected:
        raise SchemeError(
            f"platform/images/kustomization.yaml names {scheme.registry}, but CI pushes with this "
            f"repository's token to {expected}: change the newName prefixes to {expected}"
        )
    if ref == "refs/heads/main":
        return CiPlan(repo, (f"{repo}:sha-{sha}",), True)
    tag = ref.removeprefix("refs/tags/")
    if tag != f"v{version}" or scheme.release_tag != tag:
        raise SchemeError(
            f"release tag {tag} must equal v<pyproject version> (v{version}) and the newTag of "
            f"platform/images ({scheme.release_tag}): bump both, commit, then tag"
        )
    return CiPlan(repo, (f"{repo}:{tag}",), True)


# --- CLI -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    ci = sub.add_parser("ci", help="GITHUB_OUTPUT lines: image, tags, push")
    for flag in ("--name", "--ref", "--sha", "--owner", "--event"):
        ci.add_argument(flag, required=True)
    rend = sub.add_parser("render", help="render an overlay with the tag its ENV deploys")
    rend.add_argument("overlay", type=Path)
    rend.add_argument("--env", required=True, help="dev deploys the commit's sha- tag")
    sub.add_parser("registry-host", help="the registry host image pull secrets are for")
    args = parser.parse_args(argv)
    try:
        scheme = load_scheme()
        if args.cmd == "registry-host":
            print(scheme.host)
        elif args.cmd == "ci":
            plan = ci_plan(
                scheme,
                args.name,
                event=args.event,
                ref=args.ref,
                sha=args.sha,
                owner=args.owner,
                version=project_version(),
            )
            print(f"image={plan.image}\ntags={','.join(plan.tags)}\npush={str(plan.push).lower()}")
        else:
            tag = deploy_tag(args.env, os.environ.get("IMAGE_TAG") or None)
            print(yaml.safe_dump_all(render(args.overlay, tag, scheme), sort_keys=False), end="")
    except (SchemeError, RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"images: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_cli(main)
