"""Registry decisions: best-run selection, the gate, the storage URI and the env file."""

from __future__ import annotations

import os
import stat

import pytest

from helper.best_run import ENV_KEYS, format_env
from helper.best_run import write_best_run as write_env_file
from helper.settings import Metric
from ml_platform.artifacts import resolve_storage_uri
from ml_platform.selection import (
    Candidate,
    RegistryRefusal,
    check_gate,
    passes_gate,
    select_best,
)


def cand(run_id, start=0, status="FINISHED", model="m-1", **metrics) -> Candidate:
    return Candidate(
        run_id=run_id, metrics=metrics, model_id=model, status=status, start_time=start
    )


def test_select_best_max_metric():
    runs = [cand("a", accuracy=0.9), cand("b", accuracy=0.97), cand("c", accuracy=0.95)]
    assert select_best(runs, "accuracy", "max").run_id == "b"


def test_select_best_min_metric():
    runs = [cand("a", log_loss=0.3), cand("b", log_loss=0.1), cand("c", log_loss=0.2)]
    assert select_best(runs, "log_loss", "min").run_id == "b"


def test_select_best_skips_unfinished_modelless_and_nan_runs():
    runs = [
        cand("killed", status="KILLED", accuracy=1.0),
        cand("nomodel", model=None, accuracy=1.0),
        cand("nan", accuracy=float("nan")),
        cand("missing"),
        cand("ok", accuracy=0.5),
    ]
    assert select_best(runs, "accuracy", "max").run_id == "ok"


def test_ties_break_on_log_loss_then_earlier_run():
    runs = [
        cand("late", start=2, accuracy=1.0, log_loss=0.2),
        cand("early", start=1, accuracy=1.0, log_loss=0.2),
        cand("confident", start=3, accuracy=1.0, log_loss=0.05),
    ]
    assert select_best(runs, "accuracy", "max").run_id == "confident"
    assert select_best(runs[:2], "accuracy", "max").run_id == "early"


def test_select_best_refuses_when_nothing_usable():
    with pytest.raises(RegistryRefusal, match="no finished trial"):
        select_best([cand("x", status="FAILED", accuracy=1.0)], "accuracy", "max")


@pytest.mark.parametrize(
    ("value", "threshold", "mode", "ok"),
    [
        (0.95, 0.9, "max", True),
        (0.9, 0.9, "max", True),
        (0.85, 0.9, "max", False),
        (0.2, 0.5, "min", True),  # log-loss under the ceiling
        (0.5, 0.5, "min", True),
        (0.7, 0.5, "min", False),  # log-loss above the ceiling
        (float("nan"), 0.5, "min", False),
        (float("inf"), 0.9, "max", False),
    ],
)
def test_gate_threshold_is_the_worst_acceptable_value(value, threshold, mode, ok):
    assert passes_gate(value, threshold, mode) is ok


def test_gate_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        passes_gate(1.0, 0.5, "up")


def test_check_gate_messages_name_metric_value_and_meaning():
    with pytest.raises(
        RegistryRefusal, match=r"accuracy 0\.8000 .* below the floor min_metric=0\.9"
    ):
        check_gate(cand("r", accuracy=0.8), Metric.accuracy, 0.9)
    with pytest.raises(RegistryRefusal, match=r"log_loss 0\.7000 .* above the ceiling"):
        check_gate(cand("r", log_loss=0.7), Metric.log_loss, 0.5)
    check_gate(cand("r", log_loss=0.3), Metric.log_loss, 0.5)  # passes: no exception


def test_storage_uri_resolves_the_proxy_scheme_against_the_destination():
    loc = "mlflow-artifacts:/1/models/m-abc/artifacts"
    assert (
        resolve_storage_uri(loc, "s3://ml-platform/mlflow/")
        == "s3://ml-platform/mlflow/1/models/m-abc/artifacts"
    )
    with_host = "mlflow-artifacts://127.0.0.1:5000/1/models/m-abc/artifacts"
    assert resolve_storage_uri(with_host, "s3://b/x") == "s3://b/x/1/models/m-abc/artifacts"
    direct = "s3://other/2/models/m-def/artifacts"
    assert resolve_storage_uri(direct, "s3://b/x") == direct


def _env() -> dict[str, str]:
    return {key: f"value-{i}" for i, key in enumerate(ENV_KEYS)}


def test_env_file_is_written_atomically_and_readable(tmp_path):
    target = tmp_path / "nested" / ".env.best_run"
    write_env_file(target, _env())
    lines = target.read_text().splitlines()
    assert lines == [f"{k}={v}" for k, v in _env().items()]
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644
    assert [p.name for p in target.parent.iterdir()] == [".env.best_run"]  # no temp left


def test_env_file_bad_value_leaves_previous_file_untouched(tmp_path):
    target = tmp_path / ".env.best_run"
    write_env_file(target, _env())
    before = target.read_text()
    bad = {**_env(), "RUN_ID": "abc\nEVIL=1"}
    with pytest.raises(ValueError, match="RUN_ID"):
        write_env_file(target, bad)
    assert target.read_text() == before
    assert len(list(tmp_path.iterdir())) == 1


def test_format_env_rejects_bad_keys():
    with pytest.raises(ValueError, match="model-name"):
        format_env({"model-name": "x"})
