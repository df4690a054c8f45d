"""`./task pipeline`: every stage of the local path, one line each, chatter in log files.

Each stage is the same go-task command (or module) a user runs by hand, so preconditions and
flags stay in one place; this runner only captures its output into
`<state_dir>/logs/pipeline/<stage>.log`, times it, and prints the figure that matters. A
failing stage prints the tail of its log and stops the run (a rolled-back or stopped
promotion is reported, not fatal: the champion keeps serving). `--verbose` (VERBOSE=1)
also streams every line to the terminal.

Stages that need nothing of each other run side by side: the local ETL reads a local raw file
and writes a local lake, so it runs while the stack starts (MLflow's first start spends ~8 s
migrating a new SQLite registry). Tuning waits for both.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from helper.errors import run_cli
from helper.settings import Settings, load_settings
from ops import figures
from ops.progress_bar import watch_tuning

TAIL_LINES = 20


@dataclass(frozen=True)
class Stage:
    name: str
    argv: list[str]
    figure: Callable[[Settings, Path, float], str]
    fatal: bool = True  # a promotion that rolls back exits non-zero but the run goes on
    progress: bool = False  # show the tuning session's progress bar while it runs


@dataclass
class Outcome:
    stage: Stage
    returncode: int
    wall_s: float
    log: Path
    figure: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def _task() -> str:
    found = shutil.which("task")
    if not found:
        raise SystemExit("pipeline: go-task (`task`) is not on PATH; run it as `./task pipeline`")
    return found


Step = Stage | tuple[Stage, ...]  # a tuple's stages run side by side


def stages(smoke: bool) -> list[Step]:
    task, py = _task(), [sys.executable, "-m"]
    return [
        (
            Stage("local:up", [task, "local:up"], figures.stack_figure),
            Stage("data:etl", [task, "data:etl"], figures.etl_figure),
        ),
        Stage(
            "ml:tune",
            [task, "ml:tune", *(["SMOKE=1"] if smoke else [])],
            figures.tune_figure,
            progress=True,
        ),  # fmt: skip
        Stage("ml:register", [task, "ml:register"], figures.register_figure),
        Stage(
            "promote",
            [*py, "inference_service.promotion", "promote", "--target", "local"],
            figures.promote_figure,
            fatal=False,
        ),  # fmt: skip
        Stage(
            "serve:up",
            [*py, "inference_service.serving_stack", "up", "--resume"],
            figures.serve_figure,
        ),  # fmt: skip
        Stage("serve:predict", [task, "serve:predict"], figures.predict_figure),
    ]


def _run(stage: Stage, log: Path, verbose: bool) -> int:
    """Run one stage with stdout+stderr into `log` (and the terminal when verbose)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(  # noqa: S603 - argv built above
            stage.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        for raw in iter(proc.stdout.readline, b""):
            out.write(raw)
            if verbose:
                sys.stdout.buffer.write(raw)
                sys.stdout.flush()
        return proc.wait()


def run_stage(stage: Stage, settings: Settings, verbose: bool) -> Outcome:
    log = settings.log_dir / "pipeline" / f"{stage.name.replace(':', '-')}.log"
    started, t0 = time.time(), time.perf_counter()
    with watch_tuning(settings, enabled=stage.progress and not verbose):
        code = _run(stage, log, verbose)
    outcome = Outcome(stage, code, time.perf_counter() - t0, log)
    try:
        outcome.figure = stage.figure(settings, log, started)
    except Exception as exc:  # noqa: BLE001 - a figure reports, it never fails the run
        outcome.figure = f"(no figure: {exc})" if code == 0 else ""
    return outcome


def stage_line(o: Outcome) -> str:
    status = "ok" if o.ok else ("FAILED" if o.stage.fatal else "stopped")
    return f"{status:<8}{o.stage.name:<15}{o.wall_s:7.1f} s  {o.figure}".rstrip()


def failure_lines(o: Outcome) -> list[str]:
    tail = o.log.read_text(encoding="utf-8", errors="replace").splitlines()[-TAIL_LINES:]
    return [
        f"{o.stage.name} failed (exit {o.returncode}); last {len(tail)} lines of {o.log}:",
        *(f"  | {line}" for line in tail),
    ]


def run_step(step: tuple[Stage, ...], settings: Settings, verbose: bool) -> list[Outcome]:
    """Run the step's stages side by side, print each line as its stage ends, and return the
    outcomes in plan order (a failure in one never cuts the others short: each keeps its log)."""
    if len(step) == 1:
        outcomes = [run_stage(step[0], settings, verbose)]
        print(stage_line(outcomes[0]), flush=True)
        return outcomes
    with ThreadPoolExecutor(max_workers=len(step)) as pool:
        futures = {pool.submit(run_stage, stage, settings, verbose): stage for stage in step}
        for future in as_completed(futures):
            print(stage_line(future.result()), flush=True)
    done = {futures[f].name: f.result() for f in futures}
    return [done[stage.name] for stage in step]


def run_pipeline(settings: Settings, plan: Sequence[Step], verbose: bool = False) -> int:
    from ops.summary import summary_lines

    steps = [step if isinstance(step, tuple) else (step,) for step in plan]
    logs = settings.log_dir / "pipeline"
    count = sum(map(len, steps))
    print(f"pipeline: {count} stages, logs in {logs}/ (VERBOSE=1 prints everything)")
    t0 = time.perf_counter()
    for step in steps:
        failed = [o for o in run_step(step, settings, verbose) if not o.ok and o.stage.fatal]
        for outcome in failed:
            print("\n".join(failure_lines(outcome)), file=sys.stderr)
        if failed:
            return failed[0].returncode or 1
    print("\n".join(summary_lines(settings)))
    print(f"logs      {logs}/<stage>.log; total {time.perf_counter() - t0:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny tuning budget (SMOKE=1)")
    parser.add_argument("--verbose", action="store_true", help="stream every stage's output")
    args = parser.parse_args(argv)
    verbose = args.verbose or os.environ.get("VERBOSE", "") not in ("", "0")
    return run_pipeline(load_settings(), stages(args.smoke), verbose=verbose)


if __name__ == "__main__":
    run_cli(main)
