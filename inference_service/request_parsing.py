"""Turn Open Inference Protocol requests into one float32 feature matrix.

Validation lives here, away from the kserve plumbing, so that every malformed
request is rejected with a message naming the offending input *before* any
model code runs. All problems raise `kserve.errors.InvalidInput`, which the
kserve server maps to HTTP 400 (never 5xx), and nothing is cached between
requests, so a bad request cannot poison the next one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from kserve.errors import InvalidInput

# Numeric datatypes a feature may arrive as; everything is served as float32.
NUMERIC_DATATYPES = frozenset(
    {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32"}
)


def _as_numbers(name: str, data: Any) -> np.ndarray:
    """Flat float32 values of one input; strings, bools, nulls or ragged lists are refused."""
    if isinstance(data, np.ndarray):
        arr = data
    else:
        try:
            arr = np.asarray(data)
        except (ValueError, TypeError) as exc:
            raise InvalidInput(f"input '{name}': data is not a regular array ({exc})") from None
    if arr.dtype.kind not in "fiu":
        raise InvalidInput(f"input '{name}': data must be numbers, got {arr.dtype.kind!r} values")
    flat = arr.astype(np.float32, copy=False).reshape(-1)
    if not np.isfinite(flat).all():
        raise InvalidInput(f"input '{name}': data contains non-finite values (NaN or Inf)")
    return flat


def _shape_of(name: str, shape: Any) -> list[int]:
    if not isinstance(shape, Sequence) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise InvalidInput(f"input '{name}': shape {shape!r} is not a list of sizes")
    return list(shape)


def _check_rows(n_rows: int, max_rows: int) -> None:
    if n_rows == 0:
        raise InvalidInput("empty batch: the request has 0 rows")
    if n_rows > max_rows:
        raise InvalidInput(
            f"batch of {n_rows} rows exceeds the limit of {max_rows} rows (max_batch_rows)"
        )


def _input_values(inp: Any) -> tuple[str, str, list[int], np.ndarray]:
    """Name, datatype, shape and flat values of one kserve `InferInput`, cross-checked."""
    name = inp.name
    datatype = (inp.datatype or "").upper()
    if datatype not in NUMERIC_DATATYPES:
        raise InvalidInput(
            f"input '{name}': datatype {inp.datatype!r} is not numeric (use FP32 or FP64)"
        )
    shape = _shape_of(name, inp.shape)
    raw = getattr(inp, "_raw_data", None)
    values = _as_numbers(name, inp.as_numpy() if raw is not None else inp.data)
    expected = math.prod(shape)
    if values.size != expected:
        raise InvalidInput(
            f"input '{name}': shape {shape} needs {expected} values, data has {values.size}"
        )
    return name, datatype, shape, values


def rows_from_v2(inputs: Sequence[Any], features: Sequence[str], max_rows: int) -> np.ndarray:
    """Feature matrix [N, F] from v2 inputs: one named input per feature, or one [N, F] tensor.

    The named form is what the seed project's clients send (`content_type: pd`);
    its column order is taken from `features`, not from the request.
    """
    if not inputs:
        raise InvalidInput("request has no inputs")
    n_features = len(features)
    if len(inputs) == 1 and inputs[0].name not in features:
        name, _, shape, values = _input_values(inputs[0])
        if len(shape) != 2 or shape[1] != n_features:
            raise InvalidInput(
                f"input '{name}': a single tensor must have shape [N, {n_features}] "
                f"(features {', '.join(features)}), got {shape}"
            )
        _check_rows(shape[0], max_rows)
        return values.reshape(shape[0], n_features)

    by_name: dict[str, np.ndarray] = {}
    for inp in inputs:
        if inp.name not in features:
            raise InvalidInput(
                f"input '{inp.name}' is not a feature of this model "
                f"(expected {', '.join(features)})"
            )
        if inp.name in by_name:
            raise InvalidInput(f"input '{inp.name}' appears more than once")
        name, _, shape, values = _input_values(inp)
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
            raise InvalidInput(f"input '{name}': shape must be [N] or [N, 1], got {shape}")
        by_name[name] = values
    missing = [f for f in features if f not in by_name]
    if missing:
        raise InvalidInput(f"missing feature input(s): {', '.join(missing)}")
    counts = {name: v.size for name, v in by_name.items()}
    if len(set(counts.values())) != 1:
        detail = ", ".join(f"{k}={v}" for k, v in counts.items())
        raise InvalidInput(f"feature inputs have different row counts: {detail}")
    n_rows = next(iter(counts.values()))
    _check_rows(n_rows, max_rows)
    matrix = np.empty((n_rows, n_features), dtype=np.float32)
    for j, feature in enumerate(features):
        matrix[:, j] = by_name[feature]
    return matrix


def rows_from_v1(payload: Any, features: Sequence[str], max_rows: int) -> np.ndarray:
    """Feature matrix from a v1 body: `instances` as lists in feature order or as objects."""
    if not isinstance(payload, dict) or "instances" not in payload:
        raise InvalidInput("v1 request body must be a JSON object with an 'instances' list")
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise InvalidInput("'instances' must be a list of rows")
    _check_rows(len(instances), max_rows)
    if all(isinstance(row, dict) for row in instances):
        missing = sorted({f for row in instances for f in features if f not in row})
        if missing:
            raise InvalidInput(f"instances: missing feature(s) {', '.join(missing)}")
        unknown = sorted({k for row in instances for k in row if k not in features})
        if unknown:
            raise InvalidInput(f"instances: unknown feature(s) {', '.join(unknown)}")
        instances = [[row[f] for f in features] for row in instances]
    for i, row in enumerate(instances):
        if not isinstance(row, list) or len(row) != len(features):
            raise InvalidInput(
                f"instances[{i}]: expected a list of {len(features)} numbers "
                f"({', '.join(features)}) or an object keyed by feature"
            )
    values = _as_numbers("instances", instances)
    return values.reshape(len(instances), len(features))
