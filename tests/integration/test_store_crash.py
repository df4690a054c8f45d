"""The store killed with SIGKILL in the middle of a real artifact upload, then `local:up`:
the store comes back, the half-uploaded model never becomes a registry version, nothing
points at it. Then `local:reset`: refused without confirmation, and with it, store,
registry and lake go together.

Runs a private stack (own ports, state dir, lake and best-run file): the session's
shared stack must not be killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import boto3
import pytest

from helper import object_store
from helper.processes import port_is_free
from helper.settings import REPO_ROOT
from ml_platform.register import EXIT_REFUSED
from ops.local_stack import LocalStack
from tests.integration.test_hardening_tuning import _child_env, _stack_settings
from tests.integration.test_tune_pipeline import write_tiny_lake

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BLOB_MIB = 96  # big enough that the store is still receiving it when it is killed
KILL_AFTER_MIB = 8

# A real MLflow upload: pyfunc.log_model with a large artifact, through the tracking
# server's artifact proxy into the store (what every trial's log_model does).
UPLOADER = textwrap.dedent(
    """
    import sys, mlflow
    from mlflow.pyfunc import PythonModel

    class Echo(PythonModel):
        def predict(self, context, model_input):
            return model_input

    tracking, experiment, blob = sys.argv[1:4]
    mlflow.set_tracking_uri(tracking)
    mlflow.set_experiment(experiment)
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="model", python_model=Echo(), artifacts={"blob": blob},
            pip_requirements=["mlflow"],
        )
    print("uploaded", info.model_id)
    """
)


@pytest.fixture(scope="module")
def private(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("crash")
    # No configured keys: the private store generates its own pair under its state dir
    # (the session's shared stack exports its keys into os.environ).
    settings = _stack_settings(tmp).model_copy(
        update={
            "best_run_file": tmp / ".env.best_run",
            "aws_access_key_id": None,
            "aws_secret_access_key": None,
        }
    )
    stack = LocalStack(settings)
    try:
        stack.up()
        yield settings, stack, tmp
    finally:
        stack.down()


def _env(settings, **extra):
    return _child_env(settings, MLP_BEST_RUN_FILE=str(settings.best_run_file), **extra)


def test_sigkill_during_an_upload_leaves_no_version_and_up_recovers(private):
    from mlflow.entities import LoggedModelStatus
    from mlflow.tracking import MlflowClient

    settings, stack, tmp = private
    write_tiny_lake(settings.lake_uri)
    name = f"crash-{uuid.uuid4().hex[:8]}"
    blob = tmp / "blob.bin"
    with open(blob, "wb") as fh:
        for _ in range(BLOB_MIB):
            fh.write(os.urandom(2**20))
    before = object_store.disk_usage(settings)
    store_pgid = stack.s3().pid()
    # no client retries: a retry after the restart below could finish the upload after all
    env = _env(settings, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="60")
    argv = [sys.executable, "-c", UPLOADER, settings.tracking_uri, name, str(blob)]
    with open(tmp / "uploader.log", "w+") as log:
        proc = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=log, stderr=log)
        deadline = time.monotonic() + 180
        while object_store.disk_usage(settings) - before < KILL_AFTER_MIB * 2**20:
            assert proc.poll() is None, "the upload ended before the store was killed"
            assert time.monotonic() < deadline, "the store never received the blob"
            time.sleep(0.02)
        os.killpg(store_pgid, signal.SIGKILL)
        killed_at = object_store.disk_usage(settings) - before
        proc.wait(timeout=300)
        log.seek(0)
        output = log.read()
    print(f"store killed after {killed_at / 2**20:.0f} of {BLOB_MIB} MiB on disk")
    assert proc.returncode != 0, output[-2000:]
    assert "uploaded" not in output

    report = stack.up()  # `local:up` after the crash: the store restarts on its data
    assert "s3" in report.started
    assert report.problems == [], report.problems
    client = MlflowClient(settings.tracking_uri)
    experiment = client.get_experiment_by_name(name)
    [logged] = client.search_logged_models([experiment.experiment_id])
    assert logged.status != LoggedModelStatus.READY, logged.status

    # Even a session that claims the model (a FINISHED trial naming it) cannot register it.
    parent = client.create_run(experiment.experiment_id, tags={"session": "tune"})
    child = client.create_run(
        experiment.experiment_id,
        tags={"mlflow.parentRunId": parent.info.run_id, "model_id": logged.model_id},
    )
    client.log_metric(child.info.run_id, "accuracy", 1.0)
    client.log_metric(child.info.run_id, "log_loss", 0.01)
    for run in (child, parent):
        client.set_terminated(run.info.run_id, "FINISHED")
    result = subprocess.run(
        [sys.executable, "-m", "ml_platform.register"],
        cwd=REPO_ROOT,
        env=_env(settings, MLP_EXPERIMENT_NAME=name, MLP_REGISTERED_MODEL_NAME=name),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == EXIT_REFUSED, result.stdout + result.stderr
    assert logged.model_id in result.stderr and "not READY" in result.stderr, result.stderr
    assert client.search_model_versions(f"name = '{name}'") == []
    assert not settings.best_run_file.exists()
    assert stack.check() == ([], 0)  # nothing points at the half-written files

    # the store works again, and what it held before the crash is still there
    s3 = boto3.client("s3", **settings.s3_client_kwargs())
    s3.put_object(Bucket=settings.s3_bucket, Key="after-crash.txt", Body=b"ok")
    assert s3.get_object(Bucket=settings.s3_bucket, Key="after-crash.txt")["Body"].read() == b"ok"


def _cli(settings, *args):
    return subprocess.run(
        [sys.executable, "-m", "ops.local_stack", *args],
        cwd=REPO_ROOT, env=_env(settings), capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_reset_needs_confirmation_then_wipes_store_registry_and_lake_together(private):
    from mlflow.tracking import MlflowClient

    settings, stack, _ = private
    stack.up()
    write_tiny_lake(settings.lake_uri)
    s3 = boto3.client("s3", **settings.s3_client_kwargs())
    s3.put_object(Bucket=settings.s3_bucket, Key="mlflow/kept-until-reset.txt", Body=b"x")
    client = MlflowClient(settings.tracking_uri)
    client.create_experiment(f"reset-{uuid.uuid4().hex[:6]}")
    uri = f"s3://{settings.s3_bucket}/mlflow/1/models/m-x/artifacts"
    settings.best_run_file.write_text(f"MODEL_NAME=m\nMODEL_VERSION=1\nSTORAGE_URI={uri}\n")
    wiped = [*stack.wiped_paths()[:3], settings.best_run_file]
    assert all(p.exists() for p in wiped), wiped

    refused = _cli(settings, "reset")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert all(p.exists() for p in wiped)
    assert all(r["healthy"] for r in stack.status())

    done = _cli(settings, "reset", "--yes")
    assert done.returncode == 0, done.stderr
    assert not any(p.exists() for p in wiped), [p for p in wiped if p.exists()]
    assert not any(svc.running() for svc in stack.services())
    assert all(port_is_free(p) for p in [*settings.store_ports.values(), settings.mlflow_port])
    assert settings.s3_key_file.is_file()  # the key pair is not data: it stays

    stack.up()
    assert s3.list_objects_v2(Bucket=settings.s3_bucket).get("KeyCount", 0) == 0
    assert [e.name for e in client.search_experiments()] == ["Default"]
