"""The local stack really serves S3 and MLflow, survives a second `up`, and stops cleanly."""

from __future__ import annotations

import boto3
import mlflow
import pytest
import requests

from helper.local_stack import LocalStack
from helper.processes import ManagedProcess, ServiceError, free_port, pid_alive

pytestmark = pytest.mark.integration


def test_bucket_exists_and_mlflow_answers(local_stack):
    s3 = boto3.client("s3", **local_stack.s3_client_kwargs())
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert local_stack.s3_bucket in names
    assert requests.get(f"{local_stack.tracking_uri}/health", timeout=5).ok


def test_artifacts_are_proxied_to_the_bucket(local_stack, tmp_path):
    mlflow.set_tracking_uri(local_stack.tracking_uri)
    mlflow.set_experiment("stack-smoke")
    note = tmp_path / "note.txt"
    note.write_text("hello")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(note))
    s3 = boto3.client("s3", **local_stack.s3_client_kwargs())
    keys = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=local_stack.s3_bucket, Prefix="mlflow/").get(
            "Contents", []
        )
    ]
    assert any(k.endswith(f"{run.info.run_id}/artifacts/note.txt") for k in keys), keys


def test_up_twice_is_harmless(local_stack):
    stack = LocalStack(local_stack)
    before = {r["service"]: r["pid"] for r in stack.status()}
    stack.up()
    after = {r["service"]: r["pid"] for r in stack.status()}
    assert before == after
    assert all(r["healthy"] for r in stack.status())


def test_busy_port_gives_a_clear_message(local_stack, tmp_path):
    busy = ManagedProcess(
        name="intruder",
        argv=["sleep", "30"],
        run_dir=tmp_path,
        log_dir=tmp_path,
        port=local_stack.mlflow_port,
        health=lambda: False,
    )
    with pytest.raises(ServiceError, match=f"port 127.0.0.1:{local_stack.mlflow_port}"):
        busy.start(timeout=5)


def test_stop_leaves_no_children(tmp_path):
    """A service that forks a child: stopping it ends both (no orphans)."""
    port = free_port()
    script = (
        "import subprocess, http.server, sys;"
        "subprocess.Popen(['sleep', '300']);"
        f"http.server.HTTPServer(('127.0.0.1', {port}), http.server.SimpleHTTPRequestHandler)"
        ".serve_forever()"
    )
    from helper.processes import _group_members, http_ok

    svc = ManagedProcess(
        name="forker",
        argv=["python3", "-c", script],
        run_dir=tmp_path,
        log_dir=tmp_path,
        port=port,
        health=lambda: http_ok(f"http://127.0.0.1:{port}/"),
    )
    pid = svc.start(timeout=20)
    members = _group_members(pid)
    assert len(members) >= 2
    assert svc.stop(grace=5)
    assert not any(pid_alive(p) for p in members)
    assert not svc.running()
