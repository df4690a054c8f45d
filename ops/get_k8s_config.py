"""Fetch the kubeconfig of an IONOS managed Kubernetes cluster into ~/.kube/config.

Why a helper rather than `terraform output kubeconfig`: the kubeconfig holds an admin
token, and reading it from the Cloud API keeps it out of Terraform outputs, CI logs
and shell history. The token comes from the environment (`IONOS_TOKEN`) only.

What happens to an existing file (documented choice): nothing is clobbered silently.
An existing kubeconfig is first copied to `<file>.bak-<UTC timestamp>` (0600), then the
new cluster, user and context are *merged* in (entries with the same name are
replaced, all others kept) and `current-context` switches to the new cluster.
`--mode replace` writes the fetched file as is (after the same backup). Every write is
atomic (temp file + rename) and the result is 0600.

    python -m ops.get_k8s_config --cluster-id <uuid> [--output ~/.kube/config]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import yaml

from helper.atomic import atomic_write
from helper.errors import PlatformError, run_cli
from helper.settings import load_settings

DEFAULT_OUTPUT = Path("~/.kube/config")
_NAMED_LISTS = ("clusters", "contexts", "users")


class KubeconfigError(PlatformError):
    """A one-line, user-facing reason why no kubeconfig was written."""


# --- fetching ---------------------------------------------------------------------


def check_cluster_id(cluster_id: str) -> str:
    """IONOS cluster IDs are UUIDs; refusing anything else keeps the URL path sane."""
    try:
        return str(uuid.UUID(cluster_id))
    except (ValueError, AttributeError, TypeError):
        raise KubeconfigError(f"cluster-id: '{cluster_id}' is not a UUID") from None


def _http_error(status: int, cluster_id: str, api_url: str) -> KubeconfigError:
    if status == 401:
        return KubeconfigError(
            "IONOS API rejected the token (401 Unauthorized): IONOS_TOKEN is invalid or expired"
        )
    if status == 403:
        return KubeconfigError(
            f"IONOS API denied access to cluster {cluster_id} (403 Forbidden): "
            "the token's user lacks Kubernetes privileges"
        )
    if status == 404:
        return KubeconfigError(
            f"IONOS API has no cluster {cluster_id} (404 Not Found) at {api_url}: "
            "check the ID with `terraform output cluster_id`"
        )
    if status >= 500:
        return KubeconfigError(
            f"IONOS API failed with {status} for cluster {cluster_id}: server-side error, "
            "retry later"
        )
    return KubeconfigError(f"IONOS API answered {status} for cluster {cluster_id}")


def _payload_to_text(response: httpx.Response) -> str:
    """The API may answer YAML, a JSON string, or a JSON kubeconfig object."""
    if "json" not in response.headers.get("Content-Type", ""):
        return response.text
    try:
        body = response.json()
    except ValueError:
        raise KubeconfigError("IONOS API returned malformed JSON instead of a kubeconfig") from None
    return body if isinstance(body, str) else yaml.safe_dump(body, sort_keys=False)


def parse_kubeconfig(text: str, origin: str) -> dict:
    """Parse and sanity-check a kubeconfig, so garbage is never written over a good file."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        raise KubeconfigError(f"{origin} is not valid YAML") from None
    if not isinstance(doc, dict) or not doc.get("clusters") or not doc.get("users"):
        raise KubeconfigError(f"{origin} is not a kubeconfig (no clusters/users)")
    for key in _NAMED_LISTS:
        items = doc.get(key) or []
        if not isinstance(items, list) or not all(
            isinstance(i, dict) and "name" in i for i in items
        ):
            raise KubeconfigError(f"{origin}: '{key}' must be a list of named entries")
    return doc


def fetch_kubeconfig(
    cluster_id: str, token: str | None, api_url: str, timeout: float = 30.0
) -> str:
    """GET {api_url}/k8s/{cluster_id}/kubeconfig with the bearer token; returns YAML text."""
    if not token:
        raise KubeconfigError(
            "IONOS_TOKEN is not set: export an IONOS Cloud API token "
            "(e.g. `ionosctl token generate`) before fetching the kubeconfig"
        )
    cluster_id = check_cluster_id(cluster_id)
    url = f"{api_url.rstrip('/')}/k8s/{cluster_id}/kubeconfig"
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/yaml, application/json"}
    try:
        response = httpx.get(url, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise KubeconfigError(
            f"cannot reach IONOS API at {api_url}: {type(exc).__name__}"
        ) from None
    if response.status_code != 200:
        raise _http_error(response.status_code, cluster_id, api_url)
    text = _payload_to_text(response)
    parse_kubeconfig(text, "IONOS API response")
    return text


# --- writing ----------------------------------------------------------------------


def merge_kubeconfigs(existing: dict, new: dict) -> dict:
    """Add the new cluster/context/user, replacing same-named entries, keeping the rest."""
    merged = dict(existing)
    for key in _NAMED_LISTS:
        incoming = new.get(key) or []
        names = {item["name"] for item in incoming}
        kept = [item for item in existing.get(key) or [] if item["name"] not in names]
        merged[key] = kept + incoming
    merged.setdefault("apiVersion", new.get("apiVersion", "v1"))
    merged.setdefault("kind", new.get("kind", "Config"))
    current = new.get("current-context") or (new.get("contexts") or [{}])[0].get("name")
    if current:
        merged["current-context"] = current
    return merged


def _backup(path: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    backup = path.with_name(f"{path.name}.bak-{stamp}")
    shutil.copy2(path, backup)
    os.chmod(backup, 0o600)
    return backup


def write_kubeconfig(text: str, output: Path, mode: str = "merge") -> Path | None:
    """Write `text` to `output` (0600); back up an existing file first. Returns the backup.

    Content is compared parsed, not byte for byte, so re-fetching the same cluster is a
    no-op instead of a new backup each time."""
    if mode not in {"merge", "replace"}:
        raise KubeconfigError(f"mode: '{mode}' is not one of merge, replace")
    new = parse_kubeconfig(text, "fetched kubeconfig")
    if not output.exists():
        atomic_write(output, text, mode=0o600, dir_mode=0o700)
        return None
    old_text = output.read_text(encoding="utf-8")
    if mode == "merge":
        old = parse_kubeconfig(old_text, str(output)) if old_text.strip() else {}
        new = merge_kubeconfigs(old, new)
        text = yaml.safe_dump(new, sort_keys=False)
    if old_text.strip() and yaml.safe_load(old_text) == new:
        os.chmod(output, 0o600)
        return None
    backup = _backup(output)
    atomic_write(output, text, mode=0o600, dir_mode=0o700)
    return backup


# --- entry point ------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ops.get_k8s_config",
        description="Fetch an IONOS managed cluster's kubeconfig (token from IONOS_TOKEN).",
    )
    p.add_argument("--cluster-id", required=True, help="cluster UUID (terraform output cluster_id)")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="default: ~/.kube/config")
    p.add_argument("--api-url", help="IONOS Cloud API base URL (default from settings)")
    p.add_argument(
        "--mode", choices=("merge", "replace"), default="merge", help="existing file: merge|replace"
    )
    p.add_argument("--timeout", type=float, default=30.0, help="HTTP timeout in seconds")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = load_settings()
    token = settings.ionos_token.get_secret_value() if settings.ionos_token else None
    api_url = (args.api_url or settings.ionos_api_url).rstrip("/")
    output = args.output.expanduser()
    try:
        text = fetch_kubeconfig(args.cluster_id, token, api_url, args.timeout)
        backup = write_kubeconfig(text, output, args.mode)
    except KubeconfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    note = f" (previous file kept as {backup})" if backup else ""
    print(f"wrote kubeconfig of cluster {args.cluster_id} to {output}{note}")
    return 0


if __name__ == "__main__":
    run_cli(main)
