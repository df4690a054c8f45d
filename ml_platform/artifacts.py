"""Where a model version's files really are, and how registration records them.

Light on purpose (no MLflow import): the local stack's consistency check runs it on every
`local:up`, and importing the MLflow client would add seconds to each.
"""

from __future__ import annotations

from urllib.parse import urlparse

# Tag on a registered version: the files registration verified in the store (path -> bytes).
MANIFEST_TAG = "artifact_files"


def resolve_storage_uri(storage_location: str, artifacts_destination: str) -> str:
    """The real object-store URI of a model version's files.

    A server that proxies artifacts reports `mlflow-artifacts:/<path>`; `<path>` is relative
    to the server's `--artifacts-destination`, which is `settings.artifacts_destination`.
    Any other scheme is already a real location and is returned unchanged.
    """
    parsed = urlparse(storage_location)
    if parsed.scheme != "mlflow-artifacts":
        return storage_location
    return f"{artifacts_destination.rstrip('/')}/{parsed.path.lstrip('/')}"
