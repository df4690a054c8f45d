"""Read the ETL's latest lake version and carve the tuning split out of it.

Tuning ranks trials on a validation slice of the *train* split; the test split stays
untouched until the registry scores the winner, so the reported test figures are honest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd
from sklearn.model_selection import train_test_split

from helper.settings import Settings
from ml_platform.train import LABEL_COLUMN

VALIDATION_FRACTION = 0.25


@dataclass(frozen=True)
class LakeData:
    """One lake version as the trainer needs it."""

    manifest: dict
    train: pd.DataFrame
    test: pd.DataFrame

    @property
    def features(self) -> list[str]:
        return list(self.manifest["features"])

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    @property
    def version(self) -> str:
        return str(self.manifest["version"])


def load_lake(settings: Settings, version: str | None = None) -> LakeData:
    """A manifest-complete version of the configured data set (both splits): the latest,
    or `version` — the registry scores on the test split of the version the session tuned on,
    so a newer ETL run can never leak rows the model was fitted on into its test figures."""
    from data_platform.lake import latest_manifest, read_split  # the ETL area owns the layout

    if version is None:
        manifest = latest_manifest(settings.lake_uri, settings.dataset.name, settings=settings)
    else:
        manifest = _manifest_of(settings, version)
    for key in ("features", "classes", "version"):
        if key not in manifest:
            raise ValueError(f"lake manifest: missing key '{key}'")
    return LakeData(
        manifest=manifest,
        train=read_split(manifest, "train", settings=settings),
        test=read_split(manifest, "test", settings=settings),
    )


def _manifest_of(settings: Settings, version: str) -> dict:
    from data_platform.lake import filesystem, list_versions

    paths = list_versions(settings.lake_uri, settings.dataset.name, settings=settings)
    match = [p for p in paths if p.rstrip("/").split("/")[-2] == version]
    if not match:
        raise ValueError(
            f"lake_version: version '{version}' is not published under {settings.lake_uri}"
        )
    fs, _ = filesystem(settings.lake_uri, settings)
    with fs.open_input_stream(match[-1]) as fh:
        return json.loads(fh.read().decode("utf-8"))


def split_validation(
    train: pd.DataFrame, fraction: float = VALIDATION_FRACTION, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(fit, validation) frames; stratified when every class has at least two rows."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction: must be in (0, 1), got {fraction}")
    if len(train) < 4:
        raise ValueError(
            f"train split: need at least 4 rows to hold out validation, got {len(train)}"
        )
    counts = train[LABEL_COLUMN].value_counts()
    stratify = train[LABEL_COLUMN] if counts.min() >= 2 else None
    fit, val = train_test_split(train, test_size=fraction, random_state=seed, stratify=stratify)
    return fit.reset_index(drop=True), val.reset_index(drop=True)
