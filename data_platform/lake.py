"""The lake contract: where ETL output lives and how readers find the current version.

Layout: `<lake_uri>/<dataset>/<YYYYMMDD>/<version>/{train,test,rejects}/` (Parquet) and
`<version>/manifest.json`. The manifest is written last and atomically, and a version
without one does not exist for readers, so a crashed or refused run can never replace
the last good output. Readers use pyarrow filesystems, not Spark: the tuner, notebooks
and CI read the lake without starting a JVM, from a local path or from S3.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlparse

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from helper.errors import PlatformError, run_cli

if TYPE_CHECKING:
    import pandas as pd

    from helper.settings import Settings

MANIFEST = "manifest.json"
SPLITS: tuple[str, ...] = ("train", "test", "rejects")
_DATE = re.compile(r"^\d{8}$")
_VERSION = re.compile(r"^\d{8}T\d{6}\d{6}Z-[0-9a-f]{6}$")

MANIFEST_KEYS: tuple[str, ...] = (
    "dataset",
    "version",
    "created_at",
    "raw_uri",
    "features",
    "label",
    "classes",
    "seed",
    "test_fraction",
    "rows_in",
    "rows_out",
    "train_rows",
    "test_rows",
    "rejects",
    "paths",
)


class LakeError(PlatformError, RuntimeError):
    """The lake has no usable output, or a manifest does not match the contract."""


def new_version(now: datetime | None = None) -> tuple[str, str]:
    """(date dir, version id) for a run starting `now`; versions sort by start time."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    return now.strftime("%Y%m%d"), f"{now.strftime('%Y%m%dT%H%M%S%f')}Z-{uuid.uuid4().hex[:6]}"


def join(base: str, *parts: str) -> str:
    """Join URI/path parts with '/', keeping the scheme (s3a://b/x + y -> s3a://b/x/y)."""
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def version_uri(lake_uri: str, dataset: str, date: str, version: str) -> str:
    return join(lake_uri, dataset, date, version)


def build_manifest(
    *,
    dataset: str,
    version: str,
    raw_uri: str,
    features: list[str],
    label: str,
    classes: list[str],
    seed: int,
    test_fraction: float,
    counts: dict[str | None, int],
    train_rows: int,
    test_rows: int,
    base_uri: str,
    created_at: datetime | None = None,
    stages_s: dict[str, float] | None = None,
) -> dict:
    """The manifest dict; `counts` maps reject reason (None = good) to rows; `stages_s`
    the seconds each stage took (read/parse, validate, split, write)."""
    by_reason = {reason: n for reason, n in sorted(counts.items(), key=str) if reason}
    rows_out = counts.get(None, 0)
    return {
        "dataset": dataset,
        "version": version,
        "created_at": (created_at or datetime.now(UTC)).isoformat(),
        "raw_uri": raw_uri,
        "features": list(features),
        "label": label,
        "label_column": "label",
        "classes": list(classes),
        "seed": seed,
        "test_fraction": test_fraction,
        "rows_in": rows_out + sum(by_reason.values()),
        "rows_out": rows_out,
        "train_rows": train_rows,
        "test_rows": test_rows,
        "rejects": {"total": sum(by_reason.values()), "by_reason": by_reason},
        "paths": {split: join(base_uri, split) for split in SPLITS},
        "format": "parquet",
        "stages_s": {k: round(v, 3) for k, v in (stages_s or {}).items()},
    }


# --- readers (no Spark) -------------------------------------------------------------


def filesystem(uri: str, settings: Settings | None = None) -> tuple[pafs.FileSystem, str]:
    """(pyarrow filesystem, path inside it) for a local path or an s3:// / s3a:// URI.

    S3 uses the settings' endpoint, region and credentials (the default AWS chain when
    the settings carry none); s3a is Hadoop's name for the same store.
    """
    parsed = urlparse(uri)
    if parsed.scheme in {"s3", "s3a"}:
        if settings is None:
            from helper.settings import get_settings

            settings = get_settings()
        kw: dict = {"region": settings.s3_region}
        if settings.s3_endpoint_url:
            endpoint = urlparse(settings.s3_endpoint_url)
            kw.update(endpoint_override=endpoint.netloc, scheme=endpoint.scheme)
        creds = settings.s3_credentials()
        if creds:
            kw.update(access_key=creds[0], secret_key=creds[1])
        return pafs.S3FileSystem(**kw), f"{parsed.netloc}{parsed.path}".rstrip("/")
    if parsed.scheme == "file":
        return pafs.LocalFileSystem(), parsed.path
    if parsed.scheme and len(parsed.scheme) > 1:
        raise LakeError(f"uri: unsupported scheme in '{uri}' (use a path, s3:// or s3a://)")
    return pafs.LocalFileSystem(), uri


def _read_json(fs: pafs.FileSystem, path: str) -> dict:
    with fs.open_input_stream(path) as fh:
        return json.loads(fh.read().decode("utf-8"))


def list_versions(lake_uri: str, dataset: str, settings: Settings | None = None) -> list[str]:
    """Published versions (those with a manifest), oldest first, as manifest paths."""
    fs, root = filesystem(join(lake_uri, dataset), settings)
    found: list[tuple[str, str, str]] = []
    selector = pafs.FileSelector(root, allow_not_found=True, recursive=True)
    for info in fs.get_file_info(selector):
        rel = info.path[len(root) :].strip("/").split("/")
        if len(rel) == 3 and rel[2] == MANIFEST and _DATE.match(rel[0]) and _VERSION.match(rel[1]):
            found.append((rel[0], rel[1], info.path))
    return [path for _, _, path in sorted(found)]


def latest_manifest(lake_uri: str, dataset: str, settings: Settings | None = None) -> dict:
    """The newest published manifest of `dataset`; LakeError if there is none."""
    versions = list_versions(lake_uri, dataset, settings)
    if not versions:
        raise LakeError(
            f"no published ETL output for dataset '{dataset}' under {lake_uri} "
            "(run `task data:etl`)"
        )
    fs, _ = filesystem(lake_uri, settings)
    manifest = _read_json(fs, versions[-1])
    missing = [key for key in MANIFEST_KEYS if key not in manifest]
    if missing:
        raise LakeError(f"manifest {versions[-1]}: missing keys {missing}")
    return manifest


def read_split(
    manifest: dict, split: Literal["train", "test", "rejects"], settings: Settings | None = None
) -> pd.DataFrame:
    """One split of a published version as pandas: features (float64) + `label` (int32)."""
    if split not in SPLITS:
        raise ValueError(f"split: must be one of {SPLITS}, got '{split}'")
    try:
        uri = manifest["paths"][split]
    except (KeyError, TypeError) as exc:
        raise LakeError(f"manifest: no paths.{split}") from exc
    fs, path = filesystem(uri, settings)
    frame = pq.read_table(path, filesystem=fs).to_pandas()
    if split == "rejects":
        return frame
    columns = [*manifest["features"], "label"]
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise LakeError(f"{uri}: columns {absent} missing")
    frame = frame[columns].astype({name: "float64" for name in manifest["features"]})
    return frame.astype({"label": "int32"})


def main() -> int:
    """Print the current manifest of the configured lake and data set."""
    from helper.settings import get_settings

    settings = get_settings()
    try:
        manifest = latest_manifest(settings.lake_uri, settings.dataset.name, settings)
    except LakeError as exc:
        print(exc)
        return 1
    print(json.dumps(manifest, indent=2))
    return 0


if __name__ == "__main__":
    run_cli(main)
