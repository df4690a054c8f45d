"""Put the raw file where the cluster job reads it: s3://<bucket>/raw/<dataset>/<raw_file>.

Idempotent: the object carries the file's SHA-256 in its metadata, and an upload whose
content is already there is skipped, so re-running a pipeline does not rewrite data
(or bump its timestamp) for nothing.

    python -m data_platform.upload            # upload settings.raw_uri
    python -m data_platform.upload --check    # exit 1 unless the S3 endpoint answers
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx

from helper.dataset import check_raw_file
from helper.errors import run_cli
from helper.settings import Settings, load_settings

SHA_KEY = "sha256"  # object metadata key


@dataclass(frozen=True)
class UploadResult:
    uri: str
    uploaded: bool  # False: the same content was already there
    sha256: str


def raw_key(settings: Settings) -> str:
    return settings.dataset.raw_key  # the cluster overlays read the same key (platform/dataset)


def _client(settings: Settings):
    import boto3

    return boto3.client("s3", **settings.s3_client_kwargs())


def _local_source(settings: Settings, source: str | Path | None) -> Path:
    path = Path(source if source is not None else settings.raw_uri)
    if urlparse(str(path)).scheme in {"s3", "s3a"}:
        raise ValueError(f"raw_uri: '{path}' is already in S3; upload needs a local file")
    if not path.is_file():
        raise FileNotFoundError(f"raw_uri: no file at {path} (run `task data:raw`)")
    check_raw_file(settings.dataset, path)  # DatasetError: the file contradicts the YAML
    return path


def upload_raw(settings: Settings, source: str | Path | None = None, client=None) -> UploadResult:
    """Upload the raw file unless the object already holds the same bytes."""
    from botocore.exceptions import ClientError

    path = _local_source(settings, source)
    body = path.read_bytes()
    digest = hashlib.sha256(body).hexdigest()
    client = client or _client(settings)
    bucket, key = settings.s3_bucket, raw_key(settings)
    uri = f"s3://{bucket}/{key}"
    try:
        head = client.head_object(Bucket=bucket, Key=key)
        if head.get("Metadata", {}).get(SHA_KEY) == digest:
            return UploadResult(uri, False, digest)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in {"404", "NoSuchKey", "NotFound"}:
            raise
    try:
        client.put_object(Bucket=bucket, Key=key, Body=body, Metadata={SHA_KEY: digest})
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchBucket":
            raise RuntimeError(
                f"s3_bucket: bucket '{bucket}' does not exist (run `task local:up`)"
            ) from exc
        raise
    return UploadResult(uri, True, digest)


def endpoint_reachable(settings: Settings, timeout_s: float = 2.0) -> bool:
    """True when the S3 endpoint answers an HTTP request at all (any status)."""
    if not settings.s3_endpoint_url:
        return True  # AWS itself; nothing local to check
    try:
        httpx.get(settings.s3_endpoint_url, timeout=timeout_s)
    except httpx.HTTPError:
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_platform.upload", description=__doc__)
    parser.add_argument("--source", help="local file to upload (default: settings.raw_uri)")
    parser.add_argument("--check", action="store_true", help="only test the S3 endpoint")
    args = parser.parse_args(argv)
    settings = load_settings()
    if args.check:
        ok = endpoint_reachable(settings)
        if not ok:
            print(f"S3 endpoint {settings.s3_endpoint_url} not reachable", file=sys.stderr)
        return 0 if ok else 1
    try:
        result = upload_raw(settings, args.source)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"upload failed: {exc}", file=sys.stderr)
        return 1
    state = "uploaded" if result.uploaded else "unchanged"
    print(f"{state}: {result.uri} (sha256 {result.sha256[:12]})")
    print(f"cluster jobs read it as MLP_RAW_URI=s3a://{result.uri[len('s3://') :]}")
    return 0


if __name__ == "__main__":
    run_cli(main)
