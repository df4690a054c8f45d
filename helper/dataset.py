"""One file per data set: what the raw labelled CSV looks like and what the platform calls it.

A data-set YAML (e.g. `data_platform/datasets/iris.yaml`) says which raw file to read (resolved
next to the YAML, then under `data/`), its columns (features in file order, then the label),
the label's classes, optionally a header line, the MLflow experiment and registered model names
(default: derived from the data set's name) and an example request. Swapping data sets means
pointing `MLP_DATASET_CONFIG` at another such file; nothing else changes.

Two levels of checking, both naming the problem:
- `load_dataset_spec` checks the file on its own (every process that builds settings does):
  unknown keys, label among the features, duplicate columns or classes, names the CSV or
  XGBoost cannot carry, an example that does not match the features.
- `check_raw_file` checks the spec against the raw file (the ETL, `data:upload` and the pipeline
  runner call it before anything slow): the file exists, its first line has as many columns as
  the spec and is (or is not) the header the spec declares. Not done for every settings object:
  a predictor pod has no raw file and needs none.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated
from urllib.parse import urlparse

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from helper.errors import PlatformError

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "data"

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
MODEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]*$"
# XGBoost refuses feature names containing these; a comma would split the CSV column.
_FORBIDDEN_IN_NAMES = ("[", "]", "<", ",", "\n", "\r", "`")


class DatasetError(PlatformError, ValueError):
    """The data-set description is inconsistent (in itself or with its raw file)."""


def _duplicates(values: list[str]) -> list[str]:
    seen: set[str] = set()
    dups: list[str] = []
    for v in values:
        key = v.lower()
        if key in seen and v not in dups:
            dups.append(v)
        seen.add(key)
    return dups


def _name_problem(kind: str, name: str) -> str | None:
    if not name.strip():
        return f"{kind} name {name!r} is empty"
    if name != name.strip():
        return f"{kind} name {name!r} has leading or trailing whitespace"
    bad = [c for c in _FORBIDDEN_IN_NAMES if c in name]
    if bad:
        return f"{kind} name {name!r} contains {' '.join(repr(c) for c in bad)}"
    return None


class DatasetSpec(BaseModel):
    """What the raw labelled CSV looks like; swapping data sets means swapping this file."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    raw_file: Annotated[str, Field(min_length=1)]
    header: bool = False
    features: Annotated[list[str], Field(min_length=1)]
    label: Annotated[str, Field(min_length=1)]
    classes: Annotated[list[str], Field(min_length=2)]
    experiment_name: Annotated[str | None, Field(min_length=1)] = None
    registered_model_name: Annotated[str | None, Field(pattern=MODEL_NAME_PATTERN)] = None
    # rows of {feature: value}: the default request of `inference_service/prediction`
    example: Annotated[list[dict[str, float]] | None, Field(min_length=1)] = None

    _source: Path | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _consistent(self) -> DatasetSpec:
        problems: list[str] = []
        if self.label in self.features:
            problems.append(f"label '{self.label}' is also listed among the features")
        dup_features = _duplicates(self.features)
        if dup_features:
            problems.append(f"duplicate feature names: {', '.join(dup_features)}")
        dup_classes = _duplicates(self.classes)
        if dup_classes:
            problems.append(f"duplicate class names: {', '.join(dup_classes)}")
        for kind, names in (("feature", self.features), ("label", [self.label])):
            problems += [p for n in names if (p := _name_problem(kind, n))]
        problems += [p for c in self.classes if (p := _name_problem("class", c))]
        for i, row in enumerate(self.example or []):
            if set(row) != set(self.features):
                missing = [f for f in self.features if f not in row]
                extra = [k for k in row if k not in self.features]
                problems.append(
                    f"example row {i}: missing {missing or 'nothing'}, unknown {extra or 'none'}"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    # --- derived -----------------------------------------------------------------
    @property
    def columns(self) -> list[str]:
        return [*self.features, self.label]

    @property
    def label_index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.classes)}

    @property
    def default_experiment_name(self) -> str:
        return self.experiment_name or f"{self.name}-xgboost"

    @property
    def default_model_name(self) -> str:
        return self.registered_model_name or f"{self.name.replace('_', '-')}-classifier"

    @property
    def raw_key(self) -> str:
        """Where `data:upload` puts the raw file in the bucket and the cluster ETL reads it."""
        return f"raw/{self.name}/{Path(self.raw_file).name}"

    @property
    def source(self) -> Path | None:
        """The YAML this spec was read from (None when built in code)."""
        return self._source

    def raw_candidates(self) -> list[Path]:
        """Where `raw_file` may live, in order: as given if absolute, next to the YAML, data/."""
        raw = Path(self.raw_file).expanduser()
        if raw.is_absolute():
            return [raw]
        out = [self._source.parent / raw] if self._source else []
        return [*out, DATA_DIR / raw]

    def resolve_raw(self) -> Path:
        """The first candidate that exists, else the first one (`check_raw_file` says so)."""
        candidates = self.raw_candidates()
        return next((p for p in candidates if p.is_file()), candidates[0]).resolve()


def _problem_text(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


@functools.lru_cache(maxsize=16)
def _load_cached(path: str, mtime_ns: int, size: int) -> DatasetSpec:
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise DatasetError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a mapping of name, raw_file, features, ...")
    try:
        spec = DatasetSpec.model_validate(data)
    except ValidationError as exc:
        raise DatasetError(f"{path}: {_problem_text(exc)}") from None
    spec._source = Path(path).resolve()
    return spec


def load_dataset_spec(path: str | Path) -> DatasetSpec:
    """Read and check one data-set YAML; raises DatasetError naming the file and the problem."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise DatasetError(f"{p}: cannot read ({exc.strerror or exc})") from None
    return _load_cached(str(p), st.st_mtime_ns, st.st_size).model_copy()


SAMPLE_LINES = 20


def _first_lines(path: Path, limit: int = SAMPLE_LINES) -> list[str]:
    """The first `limit` non-blank lines (BOM and line ends stripped)."""
    lines = []
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        for line in fh:
            text = line.removeprefix("\ufeff").rstrip("\r\n")
            if text.strip():
                lines.append(text)
                if len(lines) == limit:
                    break
    return lines


def is_local(uri: str) -> bool:
    scheme = urlparse(str(uri)).scheme
    return len(scheme) <= 1 or scheme == "file"  # a drive letter is a path


def check_raw_file(spec: DatasetSpec, raw_uri: str | Path) -> None:
    """Raise DatasetError when the local raw file is missing, empty, or contradicts the spec:
    a declared header that is not there, or no row of the described width among the first
    lines. Object-store URIs are not opened here: the ETL names a missing object when it
    reads it."""
    if not is_local(str(raw_uri)):
        return
    path = Path(str(raw_uri).removeprefix("file://"))
    where = f"data set '{spec.name}'" + (f" ({spec.source})" if spec.source else "")
    if not path.is_file():
        looked = ", ".join(str(p) for p in spec.raw_candidates())
        raise DatasetError(
            f"{where}: raw file missing: {path} (raw_file '{spec.raw_file}', looked at {looked};"
            " or set MLP_RAW_URI)"
        )
    sample = _first_lines(path)
    if not sample:
        raise DatasetError(f"{where}: raw file {path} is empty")
    first, width = sample[0], len(spec.columns)
    fields = [f.strip() for f in first.split(",")]
    if spec.header:  # the first line is consumed as the header: it must be the header
        if len(fields) != width:
            raise DatasetError(
                f"{where}: raw file {path}: first line has {len(fields)} columns, the data set "
                f"describes {width} ({len(spec.features)} features + label '{spec.label}')"
            )
        if [f.lower() for f in fields] != [c.lower() for c in spec.columns]:
            raise DatasetError(
                f"{where}: header: true but the first line of {path} is not the header "
                f"{','.join(spec.columns)} (got {first[:120]!r})"
            )
        return
    # Without a header, a malformed row (even the first, even a stray header line) is the
    # ETL's to quarantine and count; only a file whose rows never have the described width
    # contradicts the YAML.
    counts = {len(line.split(",")) for line in sample}
    if width not in counts:
        raise DatasetError(
            f"{where}: raw file {path}: none of its first {len(sample)} lines has "
            f"{width} columns ({len(spec.features)} features + label '{spec.label}'); "
            f"the first has {len(fields)}"
        )
