"""The pipeline runner's behaviour with real subprocesses: a line per stage, the figure of
each stage, a failing stage's log tail and exit code, non-fatal stages, the progress bar."""

from __future__ import annotations

import io
import json
import sys
import threading
import time

import pytest

from helper.settings import load_settings
from ml_platform.progress import progress_path
from ops import pipeline
from ops.pipeline import Stage
from ops.progress_bar import watch_tuning


@pytest.fixture
def cfg(tmp_path):
    return load_settings(state_dir=tmp_path / "state", lake_uri=str(tmp_path / "lake"))


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _last(settings, log, since):
    return log.read_text().splitlines()[-1]


def test_stages_print_one_line_each_and_chatter_stays_in_logs(cfg, capsys):
    plan = [
        Stage("first", _py("print('chatter\\n' * 50 + 'figure one')"), _last),
        Stage("second", _py("print('figure two')"), _last),
    ]
    assert pipeline.run_pipeline(cfg, plan) == 0
    out = capsys.readouterr().out
    assert "chatter" not in out
    first = next(line for line in out.splitlines() if " first " in line)
    assert first.startswith("ok") and first.endswith("figure one")
    log = cfg.log_dir / "pipeline" / "first.log"
    assert log.read_text().count("chatter") == 50
    assert "== pipeline summary ==" in out


def test_a_failing_stage_shows_its_log_tail_and_stops_the_run(cfg, capsys):
    plan = [
        Stage("bad", _py("import sys; print('\\n'.join(map(str, range(100)))); sys.exit(3)"),
              _last),
        Stage("never", _py("open('ran', 'w')"), _last),
    ]  # fmt: skip
    assert pipeline.run_pipeline(cfg, plan) == 3
    captured = capsys.readouterr()
    assert captured.out.splitlines()[-1].startswith("FAILED")
    assert "last 20 lines of" in captured.err and str(cfg.log_dir) in captured.err
    assert "  | 99" in captured.err and "  | 79" not in captured.err
    assert "never" not in captured.out
    assert "== pipeline summary ==" not in captured.out


def test_a_non_fatal_stage_is_reported_and_the_run_goes_on(cfg, capsys):
    plan = [
        Stage("soft", _py("import sys; print('rolled back'); sys.exit(1)"), _last, fatal=False),
        Stage("after", _py("print('served')"), _last),
    ]
    assert pipeline.run_pipeline(cfg, plan) == 0
    lines = capsys.readouterr().out.splitlines()
    assert next(line for line in lines if " soft " in line).startswith("stopped")
    assert next(line for line in lines if " after " in line).startswith("ok")


def test_verbose_streams_the_stage_output(cfg, capfd):
    plan = [Stage("loud", _py("print('every line')"), _last)]
    assert pipeline.run_pipeline(cfg, plan, verbose=True) == 0
    assert capfd.readouterr().out.count("every line") == 2  # streamed, then as the figure


def test_a_figure_that_fails_does_not_fail_the_run(cfg, capsys):
    def broken(settings, log, since):
        raise KeyError("rows_in")

    assert pipeline.run_pipeline(cfg, [Stage("x", _py("pass"), broken)]) == 0
    assert "(no figure: 'rows_in')" in capsys.readouterr().out


def test_progress_bar_follows_the_progress_file_and_ignores_a_stale_one(cfg):
    path = progress_path(cfg.run_dir)
    path.parent.mkdir(parents=True)
    stale = {"total": 9, "done": 9, "running": 0, "metric": "accuracy", "best": 0.1}
    path.write_text(json.dumps(stale))
    out = io.StringIO()

    def session():
        time.sleep(0.8)  # the watcher polls every 0.5 s: a stale file would be seen
        for done, best in ((1, 0.9), (3, 0.97)):
            new = {"total": 4, "done": done, "running": 1, "metric": "accuracy", "best": best}
            path.write_text(json.dumps(new))
            time.sleep(1.2)

    with watch_tuning(cfg, file=out, disable=False):
        worker = threading.Thread(target=session)
        worker.start()
        worker.join()
    shown = out.getvalue()
    assert "3/4" in shown and "best accuracy=0.9700" in shown, shown
    assert "9/9" not in shown and "0.1000" not in shown


def _wait_for_peer(me: str, peer: str, code: int = 0) -> list[str]:
    """A stage that marks its start, then waits up to 20 s for its peer's mark: it succeeds
    only if both run at the same time."""
    return _py(
        "import pathlib, sys, time\n"
        f"pathlib.Path('{me}.started').touch()\n"
        "deadline = time.monotonic() + 20\n"
        f"while not pathlib.Path('{peer}.started').exists():\n"
        "    if time.monotonic() > deadline: sys.exit('peer never started')\n"
        "    time.sleep(0.05)\n"
        f"print('{me} saw {peer}'); sys.exit({code})\n"
    )


def test_a_tuple_of_stages_runs_side_by_side_and_the_next_waits_for_both(
    cfg, capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    check_both = "import pathlib; assert pathlib.Path('a.started').exists(); print('after')"
    plan = [
        (Stage("a", _wait_for_peer("a", "b"), _last), Stage("b", _wait_for_peer("b", "a"), _last)),
        Stage("next", _py(check_both), _last),
    ]
    assert pipeline.run_pipeline(cfg, plan) == 0
    lines = capsys.readouterr().out.splitlines()
    assert next(line for line in lines if " a " in line).endswith("a saw b")
    assert next(line for line in lines if " b " in line).endswith("b saw a")
    assert lines[0].startswith("pipeline: 3 stages")
    assert [line.split()[1] for line in lines if line.startswith("ok")][-1] == "next"


def test_a_side_by_side_failure_lets_its_peer_finish_then_stops(cfg, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plan = [
        (Stage("bad", _wait_for_peer("bad", "good", 4), _last),
         Stage("good", _wait_for_peer("good", "bad"), _last)),
        Stage("never", _py("open('ran', 'w')"), _last),
    ]  # fmt: skip
    assert pipeline.run_pipeline(cfg, plan) == 4
    captured = capsys.readouterr()
    assert next(line for line in captured.out.splitlines() if " good " in line).startswith("ok")
    assert next(line for line in captured.out.splitlines() if " bad " in line).startswith("FAILED")
    assert "bad failed (exit 4)" in captured.err and "good failed" not in captured.err
    assert not (tmp_path / "ran").exists() and "never" not in captured.out
