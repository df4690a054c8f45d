"""The local stack: an S3-compatible server and a real MLflow tracking server on 127.0.0.1.

It stands in for what Terraform and the platform install provide on a cluster
(a bucket, an in-cluster MLflow with S3 artifacts), so everything above it runs
unchanged. MLflow proxies artifacts (`--artifacts-destination`), so clients and
Ray workers need no S3 credentials.
"""

from __future__ import annotations

import argparse
import sys

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from helper.processes import ManagedProcess, ServiceError, http_ok
from helper.settings import Settings, load_settings


class LocalStack:
    def __init__(self, settings: Settings):
        self.settings = settings

    # --- services -------------------------------------------------------------------
    def s3(self) -> ManagedProcess:
        s = self.settings
        return ManagedProcess(
            name="s3",
            argv=[sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s.s3_port)],
            run_dir=s.run_dir,
            log_dir=s.log_dir,
            port=s.s3_port,
            health=lambda: http_ok(f"http://127.0.0.1:{s.s3_port}/moto-api/data.json"),
        )

    def mlflow(self) -> ManagedProcess:
        s = self.settings
        db = s.state_dir / "mlflow" / "mlflow.db"
        db.parent.mkdir(parents=True, exist_ok=True)
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
    def up(self) -> None:
        """Start what is not running; harmless when everything already is."""
        self.s3().start(timeout=60)
        self.ensure_bucket()
        self.mlflow().start(timeout=120)

    def down(self) -> None:
        for svc in reversed(self.services()):
            svc.stop()

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


def _print_status(rows: list[dict]) -> None:
    for r in rows:
        state = "up" if r["healthy"] else ("unhealthy" if r["pid"] else "down")
        print(f"{r['service']:<8} {state:<10} pid={r['pid'] or '-':<8} {r['url']}  log={r['log']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    stack = LocalStack(load_settings())
    try:
        if args.command == "up":
            stack.up()
            print(f"MLflow UI: {stack.settings.tracking_uri}")
        elif args.command == "down":
            stack.down()
        _print_status(stack.status())
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.command == "status":
        return 0 if all(r["healthy"] for r in stack.status()) else 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
