"""The default prediction request for any data set: an Open Inference Protocol v2 body.

`inference_service/prediction` (and so `task serve:predict`) sends this when no input file is
given. The rows are the data-set YAML's `example:` when it has one, else the first rows of the
held-out test split of the lake's latest version; names, order and datatypes follow the served
model's signature (its v2 metadata, `GET /v2/models/<name>`) when the caller passes it, else
the data set's features. `inference_service/input.json` stays as the hand-written Iris example.

CLI (what the script runs):
    python -m inference_service.request_builder [--metadata FILE] [--rows N]
    python -m inference_service.request_builder --model-name     # the served model's name
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from helper.dataset import DatasetSpec
from helper.errors import PlatformError, run_cli
from helper.settings import Settings, load_settings


class RequestError(PlatformError, ValueError):
    """No request can be built (no example, no lake, a signature the rows do not fit)."""


def signature_inputs(metadata: Mapping | None, spec: DatasetSpec) -> list[tuple[str, str]]:
    """(name, datatype) per input, in the served model's order; the spec's features when the
    metadata names none (a server without metadata, or an unnamed tensor signature)."""
    inputs = (metadata or {}).get("inputs") or []
    named = [(str(i["name"]), str(i.get("datatype") or "FP64")) for i in inputs if i.get("name")]
    if named and all(name in spec.features for name, _ in named):
        return named
    if named:
        unknown = [n for n, _ in named if n not in spec.features]
        raise RequestError(
            f"the served model expects inputs {unknown} that data set '{spec.name}' does not "
            "have: is MLP_DATASET_CONFIG the data set this model was trained on?"
        )
    return [(name, "FP64") for name in spec.features]


def build_request(rows: Sequence[Mapping[str, float]], inputs: Sequence[tuple[str, str]]) -> dict:
    """A v2 body with one named input per feature (the `pd` form the predictor accepts)."""
    if not rows:
        raise RequestError("no rows to send")
    out = []
    for name, datatype in inputs:
        try:
            data = [float(row[name]) for row in rows]
        except KeyError:
            raise RequestError(f"row has no value for input '{name}'") from None
        if not all(math.isfinite(v) for v in data):
            raise RequestError(f"input '{name}': non-finite value")
        out.append({"name": name, "shape": [len(data)], "datatype": datatype, "data": data})
    return {"inputs": out, "parameters": {"content_type": "pd"}}


def held_out_rows(settings: Settings, n: int = 1) -> list[dict[str, float]]:
    """The first `n` rows of the held-out test split of the latest lake version."""
    from data_platform.lake import latest_manifest, read_split

    spec = settings.dataset
    try:
        manifest = latest_manifest(settings.lake_uri, spec.name, settings)
        frame = read_split(manifest, "test", settings=settings)
    except Exception as exc:  # noqa: BLE001 - one line: why there is no row to send
        raise RequestError(
            f"data set '{spec.name}' has no example and its test split is unreadable "
            f"({exc.__class__.__name__}: {exc}); run `task data:etl` or pass INPUT=file.json"
        ) from None
    if frame.empty:
        raise RequestError(f"the test split of '{spec.name}' is empty")
    return frame[spec.features].head(n).to_dict(orient="records")


def default_rows(settings: Settings, n: int = 1) -> list[dict[str, float]]:
    spec = settings.dataset
    return [dict(r) for r in spec.example] if spec.example else held_out_rows(settings, n)


def default_request(settings: Settings, metadata: Mapping | None = None, n: int = 1) -> dict:
    spec = settings.dataset
    return build_request(default_rows(settings, n), signature_inputs(metadata, spec))


def _read_metadata(path: Path | None) -> dict | None:
    """The metadata file the script fetched; empty or unparsable means "none"."""
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "null")
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inference_service.request_builder", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--metadata", type=Path, help="the model's v2 metadata (JSON file)")
    parser.add_argument("--rows", type=int, default=1, help="test-split rows (no example)")
    parser.add_argument("--model-name", action="store_true", help="print the model name only")
    args = parser.parse_args(argv)
    settings = load_settings()
    if args.model_name:
        print(settings.registered_model_name)
        return 0
    try:
        body = default_request(settings, _read_metadata(args.metadata), max(1, args.rows))
    except RequestError as exc:
        print(f"prediction: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(body))
    return 0


if __name__ == "__main__":
    run_cli(main)
