"""The local stack really serves S3 and MLflow, survives a second `up`, and stops cleanly."""

from __future__ import annotations

import boto3
import mlflow
import pytest
import requests

from helper.processes import ManagedProcess, ServiceError, free_port, pid_alive
from ops.local_stack import LocalStack

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


# --- the object store (SeaweedFS) -----------------------------------------------------


def test_unsigned_and_wrongly_signed_requests_are_refused(local_stack):
    import urllib.error
    import urllib.request

    from botocore.exceptions import ClientError

    s3 = boto3.client("s3", **local_stack.s3_client_kwargs())
    s3.put_object(Bucket=local_stack.s3_bucket, Key="auth/probe.txt", Body=b"secret data")
    url = f"{local_stack.s3_endpoint_url}/{local_stack.s3_bucket}/auth/probe.txt"
    for method in ("GET", "PUT"):
        req = urllib.request.Request(url, data=b"x" if method == "PUT" else None, method=method)
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)  # noqa: S310 - loopback
        assert err.value.code == 403, (method, err.value.code)
    key_id, _ = local_stack.s3_credentials()
    wrong = local_stack.s3_client_kwargs()
    wrong["aws_secret_access_key"] = "wrong"  # pragma: allowlist secret
    unknown = {**local_stack.s3_client_kwargs(), "aws_access_key_id": "NOSUCHKEY"}
    for kwargs, code in ((wrong, "SignatureDoesNotMatch"), (unknown, "InvalidAccessKeyId")):
        client = boto3.client("s3", **kwargs)
        with pytest.raises(ClientError) as err:
            client.get_object(Bucket=local_stack.s3_bucket, Key="auth/probe.txt")
        assert err.value.response["Error"]["Code"] == code
        with pytest.raises(ClientError):
            client.put_object(Bucket=local_stack.s3_bucket, Key="auth/forged.txt", Body=b"x")
    assert key_id  # the right pair still reads it
    body = s3.get_object(Bucket=local_stack.s3_bucket, Key="auth/probe.txt")["Body"].read()
    assert body == b"secret data"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=local_stack.s3_bucket, Key="auth/forged.txt")


def test_store_listens_only_on_loopback_and_only_on_its_settings_ports(local_stack):
    import psutil

    pid = LocalStack(local_stack).s3().pid()
    listening = set()
    for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        for conn in proc.connections(kind="inet"):  # psutil 5.9 (net_connections from 6.0)
            if conn.status == psutil.CONN_LISTEN:
                listening.add((conn.laddr.ip, conn.laddr.port))
    assert {ip for ip, _ in listening} == {"127.0.0.1"}, listening
    assert {port for _, port in listening} == set(local_stack.store_ports.values()), listening


def test_a_put_into_a_missing_bucket_is_an_error(local_stack):
    from botocore.exceptions import ClientError

    s3 = boto3.client("s3", **local_stack.s3_client_kwargs())
    with pytest.raises(ClientError):
        s3.put_object(Bucket="never-created", Key="k", Body=b"x")
    assert "never-created" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_check_names_versions_and_aliases_whose_files_are_missing(local_stack, tmp_path):
    import json
    import uuid

    from mlflow.tracking import MlflowClient

    from inference_service.example_models import save_iris_models
    from ops.store_check import FIX, MANIFEST_TAG, resolve_storage_uri

    stack = LocalStack(local_stack)
    name = f"check-{uuid.uuid4().hex[:8]}"
    client = MlflowClient(local_stack.tracking_uri)
    exp = client.create_experiment(name)
    run = client.create_run(exp)
    model = client.create_logged_model(exp, source_run_id=run.info.run_id, name="model")
    local = save_iris_models(tmp_path / "m")["xgboost"]
    client.log_model_artifacts(model.model_id, str(local))
    files = {str(p.relative_to(local)): p.stat().st_size for p in local.rglob("*") if p.is_file()}
    client.create_registered_model(name)
    mv = client.create_model_version(
        name, f"models:/{model.model_id}", run_id=run.info.run_id,
        tags={MANIFEST_TAG: json.dumps(files)}, model_id=model.model_id,
    )  # fmt: skip
    client.set_registered_model_alias(name, "champion", mv.version)
    uri = resolve_storage_uri(
        client.get_model_version_download_uri(name, mv.version), local_stack.artifacts_destination
    )

    problems, checked = stack.check()
    assert checked >= 1
    assert not [p for p in problems if name in p], problems

    s3 = boto3.client("s3", **local_stack.s3_client_kwargs())
    booster = max(files, key=files.get)  # model.ubj, the trees
    key = uri.split(f"s3://{local_stack.s3_bucket}/", 1)[1] + f"/{booster}"
    s3.delete_object(Bucket=local_stack.s3_bucket, Key=key)
    problems, _ = stack.check()
    ours = [p for p in problems if name in p]
    assert ours == [f"{name} v{mv.version} (alias champion): artifacts missing at {uri} "
                    f"({booster}); {FIX}"], problems  # fmt: skip
    client.delete_registered_model(name)
