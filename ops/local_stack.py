"""The local stack: a persistent S3 object store and a real MLflow tracking server on 127.0.0.1.

It stands in for what Terraform and the platform install provide on a cluster
(a bucket, an in-cluster MLflow with S3 artifacts), so everything above it runs
unchanged. The store is SeaweedFS (helper/object_store.py) with its data under the
state dir; MLflow keeps its registry in SQLite beside it and proxies artifacts
(`--artifacts-destination`), so clients and Ray workers need no S3 credentials.

`down` stops the processes and keeps every byte; `reset --yes` wipes the store, the
registry and the lake together (never one without the others); `up` on existing data
reports registered versions, aliases and served revisions whose files are missing.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from helper import object_store
from helper.errors import run_cli
from helper.processes import ManagedProcess, ServiceError, http_ok
from helper.settings import Settings, load_settings
from ops import store_check


@dataclass
class UpReport:
    seconds: float
    started: list[str] = field(default_factory=list)  # services that were not running
    problems: list[str] = field(default_factory=list)  # one line each, says what to do
    checked: int = 0


class LocalStack:
    def __init__(self, settings: Settings):
        self.settings = settings

    # --- services -------------------------------------------------------------------
    def s3(self) -> ManagedProcess:
        return object_store.process(self.settings)

    @property
    def registry_dir(self) -> Path:
        return self.settings.state_dir / "mlflow"

    def mlflow(self) -> ManagedProcess:
        s = self.settings
        db = self.registry_dir / "mlflow.db"
        argv = [
            sys.executable, "-m", "mlflow", "server",
            "--host", "127.0.0.1", "--port", str(s.mlflow_port),
            "--workers", "1",
            "--backend-store-uri", f"sqlite:///{db}",
            "--artifacts-destination", s.artifacts_destination,
        ]  # fmt: skip
        env = {
            **s.s3_env(),
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
        }
        return ManagedProcess(
            name="mlflow",
            argv=argv,
            run_dir=s.run_dir,
            log_dir=s.log_dir,
            port=s.mlflow_port,
            health=lambda: http_ok(f"http://127.0.0.1:{s.mlflow_port}/health"),
            env=env,
        )

    def services(self) -> list[ManagedProcess]:
        return [self.s3(), self.mlflow()]

    # --- lifecycle ------------------------------------------------------------------
    def up(self, check: bool = True) -> UpReport:
        """Start what is not running (harmless when everything is), then check that what
        the registry and the serving state point at is in the store."""
        start = time.monotonic()
        report = UpReport(0.0)
        store, mlflow = self.s3(), self.mlflow()
        if not store.running():
            object_store.write_identities(self.settings)
            object_store.data_dir(self.settings).mkdir(parents=True, exist_ok=True)
            report.started.append("s3")
        if not mlflow.running():
            self.registry_dir.mkdir(parents=True, exist_ok=True)
            report.started.append("mlflow")

        def start_store() -> None:
            store.start(timeout=90)
            self.ensure_bucket()

        # MLflow touches the store only when artifacts move, so both start side by side:
        # `up` takes MLflow's ~16 s, not that plus the store's ~4 s
        _run_together([start_store, lambda: mlflow.start(timeout=120)])
        if check:
            report.problems, report.checked = self.check()
        report.seconds = time.monotonic() - start
        return report

    def down(self) -> None:
        """Stop both (each process group waited for, side by side: the store alone takes ~15 s);
        all data stays on disk."""
        _run_together([svc.stop for svc in self.services()])

    def check(self) -> tuple[list[str], int]:
        """Problem lines (empty when consistent) and how many pointers were checked."""
        try:
            problems, checked = store_check.check(self.settings)
        except Exception as exc:  # noqa: BLE001 - reported, `up` itself succeeded
            return [f"consistency not checked: {exc.__class__.__name__}: {exc}"], 0
        return [p.line() for p in problems], checked

    def ensure_bucket(self) -> None:
        client = boto3.client("s3", **self.settings.s3_client_kwargs())
        bucket = self.settings.s3_bucket
        try:
            client.head_bucket(Bucket=bucket)
        except ClientError:
            try:
                client.create_bucket(Bucket=bucket)
            except (ClientError, BotoCoreError) as exc:
                raise ServiceError(f"could not create bucket '{bucket}': {exc}") from exc

    def wiped_paths(self) -> list[Path]:
        """What `reset` deletes: the store's data, the registry, the lake (when it is a
        local path; an s3 lake in the local bucket goes with the store), and everything
        that refers to them: serving state and model cache, promotion reports, Ray results, and
        Prometheus' TSDB (version numbers restart after a reset, so its series of the old
        `<model>-v<N>` revisions would mix with the new ones)."""
        s = self.settings
        paths = [object_store.data_dir(s), self.registry_dir]
        if urlparse(s.lake_uri).scheme in ("", "file"):
            paths.append(Path(urlparse(s.lake_uri).path if "://" in s.lake_uri else s.lake_uri))
        names = ("serving", "promotion", "ray_results", "prometheus")
        paths += [s.state_dir / name for name in names]
        return paths

    def reset(self) -> list[str]:
        """Stop serving and the stack, then wipe store, registry and lake together.

        `.env.best_run` is removed too when it names a model in the local store (it would
        point at nothing); one naming a cluster model is left alone. The key pair stays."""
        from inference_service.serving_stack import ServingStack

        ServingStack(self.settings).down()
        self.down()
        for svc in self.services():  # never wipe under a process that still runs
            if svc.running():
                raise ServiceError(f"{svc.name} still runs (pid {svc.pid()}); nothing wiped")
        done = []
        for path in self.wiped_paths():
            if path.exists():
                shutil.rmtree(path) if path.is_dir() else path.unlink()
                done.append(str(path))
        best = store_check.best_run_pointer(self.settings)
        if best and store_check.in_local_store(self.settings, best.uri):
            self.settings.best_run_file.unlink()
            done.append(str(self.settings.best_run_file))
        return done

    def status(self) -> list[dict]:
        rows = []
        for svc in self.services():
            pid = svc.pid()
            rows.append(
                {
                    "service": svc.name,
                    "pid": pid,
                    "healthy": bool(pid) and svc.health(),
                    "url": f"http://127.0.0.1:{svc.port}",
                    "log": str(svc.log_file),
                }
            )
        return rows


def _run_together(calls: list) -> None:
    """Run the calls in threads, wait for all, re-raise the first failure."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
    for future in futures:
        future.result()


def _print_status(rows: list[dict]) -> None:
    for r in rows:
        state = "up" if r["healthy"] else ("unhealthy" if r["pid"] else "down")
        print(f"{r['service']:<8} {state:<10} pid={r['pid'] or '-':<8} {r['url']}  log={r['log']}")


def _up_line(stack: LocalStack, report: UpReport) -> str:
    s = stack.settings
    how = f"started {'+'.join(report.started)}" if report.started else "already running"
    state = "consistent" if not report.problems else f"{len(report.problems)} problem(s)"
    return (
        f"local stack up ({how}, {report.seconds:.1f} s): S3 {s.s3_endpoint_url} "
        f"(data {object_store.data_dir(s)}), MLflow {s.tracking_uri}; "
        f"{report.checked} registry/serving pointer(s) checked, {state}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status", "check", "reset"])
    parser.add_argument("--yes", action="store_true", help="confirm `reset` (deletes data)")
    args = parser.parse_args(argv)
    stack = LocalStack(load_settings())
    try:
        if args.command == "up":
            report = stack.up()
            print(_up_line(stack, report))
            for line in report.problems:
                print(f"warning: {line}", file=sys.stderr)
            return 0
        if args.command == "check":
            problems, checked = stack.check()
            for line in problems:
                print(f"problem: {line}", file=sys.stderr)
            print(f"{checked} pointer(s) checked, {len(problems)} problem(s)")
            return 1 if problems else 0
        if args.command == "reset":
            if not args.yes:
                print(
                    "reset deletes the object store, the MLflow registry and the lake "
                    f"under {stack.settings.state_dir}; run it again with --yes "
                    "(`task local:reset -- --yes`)",
                    file=sys.stderr,
                )
                return 2
            wiped = stack.reset()
            print(f"local stack stopped and wiped: {', '.join(wiped) or 'nothing to wipe'}")
            return 0
        if args.command == "down":
            stack.down()
        _print_status(stack.status())
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.command == "status":
        return 0 if all(r["healthy"] for r in stack.status()) else 3
    return 0


if __name__ == "__main__":
    run_cli(main)
