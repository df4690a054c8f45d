"""Does anything the registry or the serving state points at lack its files in the store?

Run by `local:up` (and `task local:check`) against the running stack. It asks the tracking
server over its REST API (plain HTTP: importing the MLflow client would add ~5 s to every
`up`) for every registered version and alias, and the store (boto3) for the files under each
version's location. A version registered by `ml_platform.register` carries the list of files
it verified (tag `artifact_files`, path -> bytes); older or foreign versions need `MLmodel`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlparse

import httpx

from helper.settings import Settings
from ml_platform.artifacts import MANIFEST_TAG, resolve_storage_uri

FIX = (
    "run `task local:reset -- --yes` to start over (store, registry and lake together), or "
    "delete the version in the MLflow UI and register again (`task ml:tune ml:register`)"
)


@dataclass(frozen=True)
class Pointer:
    """Something that names model files: a registry version or a serving revision."""

    what: str  # e.g. "iris-classifier v3 (alias champion)"
    uri: str
    expected: Mapping[str, int] | None = None  # path -> bytes, when the registry recorded it


@dataclass(frozen=True)
class Problem:
    pointer: Pointer
    missing: list[str] = field(default_factory=list)

    def line(self) -> str:
        files = ", ".join(self.missing[:5]) + (" ..." if len(self.missing) > 5 else "")
        return f"{self.pointer.what}: artifacts missing at {self.pointer.uri} ({files}); {FIX}"


def missing_files(stored: Mapping[str, int], expected: Mapping[str, int] | None) -> list[str]:
    """Files of `expected` absent from `stored` or of another size; without a manifest,
    a model directory must at least hold its `MLmodel`."""
    if expected is None:
        return [] if "MLmodel" in stored else ["MLmodel"]
    out = []
    for path, size in sorted(expected.items()):
        if path not in stored:
            out.append(path)
        elif stored[path] != size:
            out.append(f"{path} ({stored[path]} bytes, registered {size})")
    return out


def parse_manifest(value: str | None) -> dict[str, int] | None:
    if not value:
        return None
    try:
        data = json.loads(value)
    except ValueError:
        return None
    return {str(k): int(v) for k, v in data.items()} if isinstance(data, dict) else None


# --- the registry, over MLflow's REST API ------------------------------------------------


def _get(settings: Settings, path: str, params: dict) -> dict:
    url = f"{settings.tracking_uri.rstrip('/')}/api/2.0/mlflow/{path}"
    resp = httpx.get(url, params=params, timeout=settings.tracking_timeout_s)
    resp.raise_for_status()
    return resp.json()


def _pages(settings: Settings, path: str, key: str, params: dict) -> Iterator[dict]:
    token = None
    while True:
        page = _get(settings, path, {**params, **({"page_token": token} if token else {})})
        yield from page.get(key, [])
        token = page.get("next_page_token")
        if not token:
            return


def registry_pointers(settings: Settings) -> list[Pointer]:
    out = []
    search = {"max_results": 1000}
    for model in _pages(settings, "registered-models/search", "registered_models", search):
        name = model["name"]
        aliases: dict[str, list[str]] = {}
        for a in model.get("aliases", []):
            aliases.setdefault(str(a["version"]), []).append(a["alias"])
        params = {"filter": f"name = '{name}'", "max_results": 1000}
        for mv in _pages(settings, "model-versions/search", "model_versions", params):
            version = str(mv["version"])
            location = _get(
                settings, "model-versions/get-download-uri", {"name": name, "version": version}
            )["artifact_uri"]
            tags = {t["key"]: t.get("value") for t in mv.get("tags", [])}
            label = f"{name} v{version}"
            if version in aliases:
                label += f" (alias {', '.join(sorted(aliases[version]))})"
            out.append(
                Pointer(
                    label,
                    resolve_storage_uri(location, settings.artifacts_destination),
                    parse_manifest(tags.get(MANIFEST_TAG)),
                )
            )
    return out


def best_run_pointer(settings: Settings) -> Pointer | None:
    """The model `.env.best_run` names (what `serve:up` and `promote` would load)."""
    from helper.best_run import BestRunError, read_best_run

    path = settings.best_run_file
    try:
        best = read_best_run(path)
    except BestRunError:
        return None  # absent or incomplete: serve:up's error to report
    label = f"{path.name} ({best['MODEL_NAME']} v{best['MODEL_VERSION']})"
    return Pointer(label, best["STORAGE_URI"])


def serving_pointers(settings: Settings) -> list[Pointer]:
    """The best-run file and the saved serving state's revisions."""
    from inference_service.state import StateError, load_state, state_file

    best = best_run_pointer(settings)
    out = [best] if best else []
    try:
        state = load_state(state_file(settings))
    except StateError:
        state = None
    if state is not None:
        for role, rev in (("champion", state.champion), ("canary", state.canary)):
            if rev is not None:
                out.append(Pointer(f"serving {role} v{rev.version}", rev.storage_uri))
    return out


# --- the store ---------------------------------------------------------------------------


def in_local_store(settings: Settings, uri: str) -> bool:
    parsed = urlparse(uri)
    ours = parsed.scheme in {"s3", "s3a"} and parsed.netloc == settings.s3_bucket
    return settings.s3_is_local and ours


def stored_files(s3, uri: str) -> dict[str, int]:
    """path (relative to `uri`) -> bytes of every object under it."""
    parsed = urlparse(uri)
    prefix = parsed.path.strip("/") + "/"
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=parsed.netloc, Prefix=prefix):
        for obj in page.get("Contents", []):
            out[obj["Key"][len(prefix) :]] = int(obj["Size"])
    return out


def check(settings: Settings, s3=None) -> tuple[list[Problem], int]:
    """(problems, number of pointers checked). Raises when the registry or the store does
    not answer: the caller says what could not be checked."""
    import boto3

    s3 = s3 or boto3.client("s3", **settings.s3_client_kwargs())
    pointers = [
        p
        for p in registry_pointers(settings) + serving_pointers(settings)
        if in_local_store(settings, p.uri)
    ]
    problems = []
    listed: dict[str, dict[str, int]] = {}
    for p in pointers:
        if p.uri not in listed:
            listed[p.uri] = stored_files(s3, p.uri)
        missing = missing_files(listed[p.uri], p.expected)
        if missing:
            problems.append(Problem(p, missing))
    return problems, len(pointers)
