"""`python -m inference_service.promotion promote|rollback` - argument parsing only.

Exit codes: 0 promoted / first deploy / nothing to do; 2 stopped at the gates;
3 rolled back; 4 another promotion holds the lock; 1 anything else (message on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from helper.errors import run_cli

EXIT_ERROR, EXIT_LOCKED = 1, 4


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m inference_service.promotion",
        description="GitOps promotion of a registered model",
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, text in (
        ("promote", "gates, canary, analysis, promote or roll back"),
        ("rollback", "send the canary's traffic back to the champion"),
    ):
        c = sub.add_parser(name, help=text)
        c.add_argument("--target", choices=("local", "kserve"), default="local")
        c.add_argument("--json", action="store_true", help="print the report as JSON")
    promote = sub.choices["promote"]
    promote.add_argument("--best-run", type=Path, help="default: the committed .env.best_run")
    promote.add_argument("--model-version", help="promote this version instead (dispatch)")
    promote.add_argument("--gates-only", action="store_true", help="stop after the gates")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    from helper.processes import ServiceError
    from helper.settings import get_settings
    from inference_service.promotion import flow
    from inference_service.promotion.lock import PromotionLocked
    from inference_service.promotion.registry import PromotionError
    from inference_service.promotion.targets import make_target
    from inference_service.state import StateError

    settings = get_settings()
    problem = settings.state_dir_problem()  # the lock and the reports live there
    if problem:
        print(f"{args.cmd}: {problem}", file=sys.stderr)
        return EXIT_ERROR
    try:
        target = make_target(args.target, settings)
        if args.cmd == "promote":
            ref = flow.candidate_from(args.best_run or settings.best_run_file, args.model_version)
            report = flow.promote(settings, target, ref, gates_only=args.gates_only)
        else:
            report = flow.rollback(settings, target)
    except PromotionLocked as exc:
        print(f"promotion refused: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except (PromotionError, ServiceError, StateError) as exc:
        print(f"{args.cmd}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(report.as_dict(), indent=2, default=str) if args.json else report.markdown())
    return report.exit_code


if __name__ == "__main__":
    run_cli(main)
