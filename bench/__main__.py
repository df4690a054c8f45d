"""`python -m bench [parts...] [--smoke] [--out bench/results]` — see bench/README.md."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from bench import runner
from bench.serving import CONFIGS
from helper.errors import run_cli
from helper.settings import REPO_ROOT, load_settings


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(float(s)) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--etl-sizes: '{text}' is not a list of numbers"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("--etl-sizes: give positive row counts, e.g. 1e5,1e6")
    return sizes


def _configs(text: str) -> list[str]:
    chosen = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in CONFIGS]
    if unknown:
        raise argparse.ArgumentTypeError(f"--serving: unknown {unknown}; choose from {CONFIGS}")
    return chosen


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("parts", nargs="*", help=f"any of {', '.join(runner.PARTS)} (default: all)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the harness, not speed")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "bench" / "results")
    p.add_argument("--model-dir", type=Path, help="an MLflow model dir (default: train one)")
    p.add_argument("--serving", type=_configs, help=f"subset of {','.join(CONFIGS)}")
    p.add_argument("--etl-sizes", type=_sizes, help="raw row counts, e.g. 1e5,1e6,1e7")
    p.add_argument("--keep-work", action="store_true", help="keep the scratch dir (logs)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        runner.select(args.parts)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    options = {"given_model_dir": args.model_dir, "etl_sizes": args.etl_sizes}
    if args.serving:
        options["serving_configs"] = args.serving
    doc = runner.run(
        args.parts,
        settings=load_settings(),
        smoke=args.smoke,
        out_dir=args.out,
        keep_work=args.keep_work,
        **options,
    )
    failed = [name for name, part in doc["parts"].items() if part.get("error")]
    if failed:
        print(f"bench: part(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_cli(main)
