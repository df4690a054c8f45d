"""Run the promotion inside the cluster as a Kubernetes Job, and mirror its outcome.

CI (`.github/workflows/promote.yml`) reaches only the Kubernetes API: MLflow is a ClusterIP
service, the InferenceService URLs are cluster-local and the predictor wants a bearer token
that lives in a Secret. So the runner starts `python -m inference_service.promotion` as a Job
(rendered from `inference_service/k8s/overlays/promotion-<env>`), streams its log, writes the
report to `$GITHUB_STEP_SUMMARY` and exits with the promotion's own exit code.

One promotion at a time: the Job has a fixed name, so creating it is the in-cluster lock (the
API server refuses a second one with 409). A finished Job of that name is deleted first; a
running one makes this exit 4 without touching it. The candidate (`.env.best_run` of the
commit being promoted) goes into a ConfigMap owned by the Job, created only after the Job
exists, so a refused launch never changes what a running promotion reads.

    python -m inference_service.promotion.launch [--env-name dev|prod]
        [--manifest FILE | --kustomize DIR] [--best-run FILE] [--model-version V]
        [--env KEY=VALUE ...] [--timeout-s S]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from helper.errors import PlatformError, run_cli
from inference_service.promotion.cli import EXIT_ERROR, EXIT_LOCKED

CANDIDATE_CONFIGMAP = "promotion-candidate"
CANDIDATE_KEY = ".env.best_run"
CONTAINER = "promotion"
OVERLAYS = Path("inference_service/k8s/overlays")  # promotion-<env>: env = the serving overlay
REPORT_HEADING = "## Promotion of "
KNOWN_EXIT_CODES = {0, 1, 2, 3, 4}  # cli.py's meanings; anything else is an error (1)
# A pod that waits for one of these will never start: fail now, not at the deadline.
STUCK_REASONS = {
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
}


class LaunchError(PlatformError, RuntimeError):
    """The Job could not run to an outcome; `code` is the exit code to leave with."""

    def __init__(self, message: str, code: int = EXIT_ERROR):
        super().__init__(message)
        self.code = code


@dataclass
class Outcome:
    code: int
    log: str
    detail: str = ""
    notes: list[str] = field(default_factory=list)


def _status(exc: Exception) -> int | None:
    return getattr(exc, "status", None)


def job_from(objs: Iterable[dict]) -> dict:
    """The one Job of a rendered target."""
    jobs = [o for o in objs if o.get("kind") == "Job"]
    if len(jobs) != 1:
        raise LaunchError(f"expected exactly one Job in the manifest, found {len(jobs)}")
    return jobs[0]


def with_candidate(job: dict, model_version: str | None, extra_env: dict[str, str]) -> dict:
    """The Job to create: `--model-version` appended, extra env (e.g. a Prometheus URL) set."""
    import copy

    job = copy.deepcopy(job)
    containers = job["spec"]["template"]["spec"]["containers"]
    main = next((c for c in containers if c["name"] == CONTAINER), None)
    if main is None:
        raise LaunchError(f"the Job has no container named '{CONTAINER}'")
    if model_version:
        main["args"] = [*main.get("args", []), "--model-version", model_version]
    env = [e for e in main.get("env", []) if e["name"] not in extra_env]
    main["env"] = env + [{"name": k, "value": v} for k, v in extra_env.items()]
    return job


def check_candidate_model(job: dict, candidate: str) -> None:
    """The candidate is a version of the model the Job's InferenceService serves.

    KServe serves the model under the InferenceService's name, which platform/dataset derives
    from the selected data set's registered model name; a run of another data set's model
    committed without selecting its data set would otherwise be rolled into the wrong service.
    """
    pairs = (ln.split("=", 1) for ln in candidate.splitlines() if "=" in ln and ln[:1] != "#")
    model = {k.strip(): v.strip() for k, v in pairs}.get("MODEL_NAME", "")
    containers = job["spec"]["template"]["spec"]["containers"]
    env = {
        e["name"]: e.get("value") for c in containers if c["name"] == CONTAINER for e in c["env"]
    }
    isvc = env.get("MLP_KSERVE_ISVC_NAME")
    if model and isvc and model != isvc:
        raise LaunchError(
            f"the candidate is a version of '{model}', but the Job promotes the InferenceService "
            f"'{isvc}' (the data set of platform/dataset/dataset.env): select the candidate's "
            "data set (`task platform:dataset DATASET=…`) and commit it with .env.best_run"
        )


class JobLauncher:
    """Create the promotion Job, follow it, return its exit code. `batch` / `core` are the
    kubernetes client's BatchV1Api / CoreV1Api (a fake in the unit tests)."""

    def __init__(
        self,
        batch,
        core,
        namespace: str,
        out: IO[str] = sys.stdout,
        poll_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.batch, self.core, self.namespace = batch, core, namespace
        self.out, self.poll_s, self.clock, self.sleep = out, poll_s, clock, sleep

    # --- lifecycle -------------------------------------------------------------------------
    def run(self, job: dict, candidate: str | None, timeout_s: float) -> Outcome:
        name = job["metadata"]["name"]
        deadline = self.clock() + timeout_s
        self._clear_finished(name, deadline)
        created = self._create(job)
        try:
            if candidate is not None:
                self._put_candidate(created, candidate)
            pod = self._wait_for_start(name, deadline)
            log = self._follow(pod, deadline)
            code, detail = self._exit_code(name, pod, deadline)
        except LaunchError as exc:
            self._delete(name)  # ours, and it cannot finish: free the lock
            raise LaunchError(f"{exc} (Job {self.namespace}/{name} deleted)", exc.code) from None
        except Exception as exc:
            if _status(exc) is None:
                raise
            self._delete(name)  # e.g. 403 on the ConfigMap: the pod would wait for it forever
            raise LaunchError(
                f"Kubernetes API refused a call: {_status(exc)} {getattr(exc, 'reason', '')} "
                f"(Job {self.namespace}/{name} deleted)"
            ) from None
        return Outcome(code, log, detail)

    def _clear_finished(self, name: str, deadline: float) -> None:
        job = self._read_job(name)
        if job is None:
            return
        if not _finished(job):
            raise LaunchError(
                f"another promotion is running: Job {self.namespace}/{name} is active "
                "(wait for it, or `kubectl delete job` it if it is stuck)",
                EXIT_LOCKED,
            )
        self.out.write(f"deleting the finished Job {self.namespace}/{name} of an earlier run\n")
        self._delete(name)
        while self._read_job(name) is not None:
            if self.clock() >= deadline:
                raise LaunchError(f"the old Job {name} was not deleted in time")
            self.sleep(self.poll_s)

    def _create(self, job: dict):
        try:
            return self.batch.create_namespaced_job(self.namespace, job)
        except Exception as exc:
            if _status(exc) == 409:
                raise LaunchError(
                    f"another promotion started first: Job {self.namespace}/"
                    f"{job['metadata']['name']} already exists",
                    EXIT_LOCKED,
                ) from None
            raise

    def _put_candidate(self, created, candidate: str) -> None:
        """The candidate ConfigMap, owned by the Job (garbage-collected with it)."""
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": CANDIDATE_CONFIGMAP,
                "labels": {"app.kubernetes.io/component": "promotion"},
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": created.metadata.name,
                        "uid": created.metadata.uid,
                    }
                ],
            },
            "data": {CANDIDATE_KEY: candidate},
        }
        try:
            self.core.create_namespaced_config_map(self.namespace, body)
        except Exception as exc:
            if _status(exc) != 409:
                raise
            self.core.replace_namespaced_config_map(CANDIDATE_CONFIGMAP, self.namespace, body)

    def _delete(self, name: str) -> None:
        try:
            self.batch.delete_namespaced_job(name, self.namespace, propagation_policy="Background")
        except Exception as exc:
            if _status(exc) != 404:
                raise

    def _read_job(self, name: str):
        try:
            return self.batch.read_namespaced_job(name, self.namespace)
        except Exception as exc:
            if _status(exc) == 404:
                return None
            raise

    # --- following the pod -----------------------------------------------------------------
    def _read_pod(self, pod):
        """The pod now, or None once it is gone (the Job controller deletes it at the deadline)."""
        try:
            return self.core.read_namespaced_pod(pod.metadata.name, self.namespace)
        except Exception as exc:
            if _status(exc) == 404:
                return None
            raise

    def _pod(self, name: str):
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=f"job-name={name}")
        return pods.items[0] if pods.items else None

    def _wait_for_start(self, name: str, deadline: float):
        """The Job's pod once its container runs or ran; stuck pods fail fast."""
        while True:
            pod = self._pod(name)
            if pod is not None:
                state = _container_state(pod)
                if state is not None and (state.running or state.terminated):
                    return pod
                waiting = state.waiting if state is not None else None
                if waiting is not None and waiting.reason in STUCK_REASONS:
                    raise LaunchError(
                        f"pod {pod.metadata.name} cannot start: {waiting.reason}: "
                        f"{waiting.message or ''}".rstrip(": ")
                    )
            job = self._read_job(name)
            if job is not None and _failed_reason(job):
                raise LaunchError(f"Job {name} failed before its pod ran: {_failed_reason(job)}")
            if self.clock() >= deadline:
                raise LaunchError(f"Job {name}: no running pod before the timeout")
            self.sleep(self.poll_s)

    def _follow(self, pod, deadline: float) -> str:
        """Copy the container's log to `out` until it ends; reconnect if the stream drops."""
        chunks: list[str] = []
        since: int | None = None
        while True:
            kw = {"container": CONTAINER, "follow": True, "_preload_content": False}
            if since is not None:
                kw["since_seconds"] = since
            resp = self.core.read_namespaced_pod_log(pod.metadata.name, self.namespace, **kw)
            try:
                for chunk in resp.stream(4096):
                    text = chunk.decode("utf-8", errors="replace")
                    chunks.append(text)
                    self.out.write(text)
            finally:
                resp.release_conn()
            current = self._read_pod(pod)
            state = _container_state(current) if current is not None else None
            if state is None or state.terminated or self.clock() >= deadline:
                return "".join(chunks)
            since = max(1, int(self.poll_s))  # the stream dropped while the promotion runs
            self.sleep(self.poll_s)

    def _exit_code(self, name: str, pod, deadline: float) -> tuple[int, str]:
        while True:
            current = self._read_pod(pod)
            state = _container_state(current) if current is not None else None
            if state is not None and state.terminated is not None:
                code = state.terminated.exit_code
                reason = state.terminated.reason or ""
                if code in KNOWN_EXIT_CODES:
                    return code, reason
                return EXIT_ERROR, f"container ended with {code} ({reason or 'no reason'})"
            job = self._read_job(name)
            if job is not None and _failed_reason(job):
                return EXIT_ERROR, f"Job failed: {_failed_reason(job)}"
            if current is None:
                return EXIT_ERROR, f"pod {pod.metadata.name} disappeared before it finished"
            if self.clock() >= deadline:
                raise LaunchError(f"Job {name} did not finish before the timeout")
            self.sleep(self.poll_s)


def _container_state(pod):
    for status in (pod.status.container_statuses or []) if pod.status else []:
        if status.name == CONTAINER:
            return status.state
    return None


def _conditions(job) -> dict[str, object]:
    return {c.type: c for c in (job.status.conditions or [])} if job.status else {}


def _finished(job) -> bool:
    conds = _conditions(job)
    return any(t in conds and conds[t].status == "True" for t in ("Complete", "Failed"))


def _failed_reason(job) -> str:
    cond = _conditions(job).get("Failed")
    if cond is None or cond.status != "True":
        return ""
    return f"{cond.reason or 'Failed'}: {cond.message or ''}".rstrip(": ")


# --- report --------------------------------------------------------------------------------


def summary_markdown(outcome: Outcome, job_name: str) -> str:
    """The promotion's own Markdown report from the log, or the log's tail when it has none."""
    at = outcome.log.rfind(REPORT_HEADING)
    if at >= 0:
        text = outcome.log[at:]
    else:
        tail = "\n".join(outcome.log.rstrip().splitlines()[-40:])
        text = (
            f"## Promotion Job {job_name}: exit {outcome.code}\n\n"
            f"{outcome.detail or 'no report in the log'}\n\n```\n{tail}\n```\n"
        )
    return text if text.endswith("\n") else text + "\n"


def write_summary(text: str, path: str | None = None) -> None:
    path = path or os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(text)


# --- CLI -----------------------------------------------------------------------------------


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m inference_service.promotion.launch")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--manifest", type=Path, help="a rendered Job manifest (YAML)")
    src.add_argument("--kustomize", type=Path, help="default: overlays/promotion-<env-name>")
    p.add_argument(
        "--env-name",
        choices=("dev", "prod"),
        default="prod",
        help="the serving overlay whose InferenceService is promoted (stack and image tag as "
        "`task serve:deploy ENV=…` uses them)",
    )
    p.add_argument("--best-run", type=Path, help="default: the committed .env.best_run")
    p.add_argument("--model-version", help="promote this registered version instead")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--timeout-s", type=float, help="default: the Job's activeDeadlineSeconds+120")
    return p.parse_args(argv)


def _objects(args: argparse.Namespace) -> list[dict]:
    import yaml

    if args.manifest:
        return [d for d in yaml.safe_load_all(args.manifest.read_text(encoding="utf-8")) if d]
    from helper.images import deploy_tag, render
    from helper.validate import RenderError

    overlay = args.kustomize or OVERLAYS / f"promotion-{args.env_name}"
    try:
        return render(overlay, deploy_tag(args.env_name, os.environ.get("IMAGE_TAG") or None))
    except RenderError as exc:
        raise LaunchError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    from helper.processes import ServiceError
    from helper.settings import get_settings

    settings = get_settings()
    try:
        extra = dict(kv.split("=", 1) for kv in args.env)
    except ValueError:
        print("launch: --env takes KEY=VALUE", file=sys.stderr)
        return EXIT_ERROR
    best_run = args.best_run or settings.best_run_file
    try:
        candidate = best_run.read_text(encoding="utf-8")
        job = with_candidate(job_from(_objects(args)), args.model_version, extra)
        check_candidate_model(job, candidate)
        namespace = job["metadata"].get("namespace") or settings.kserve_namespace
        deadline = job["spec"].get("activeDeadlineSeconds", 3600)
        timeout = args.timeout_s or deadline + 120
        from kubernetes import client

        from inference_service.promotion.targets.kserve import load_cluster_config

        load_cluster_config()
        launcher = JobLauncher(client.BatchV1Api(), client.CoreV1Api(), namespace)
        outcome = launcher.run(job, candidate, timeout)
    except OSError as exc:
        print(f"launch: cannot read {best_run}: {exc.strerror}", file=sys.stderr)
        return EXIT_ERROR
    except ServiceError as exc:  # no cluster credentials
        print(f"launch: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except LaunchError as exc:
        print(f"launch: {exc}", file=sys.stderr)
        write_summary(f"## Promotion not run\n\n{exc}\n")
        return exc.code
    except Exception as exc:  # the API said no before the Job existed (403, 422, ...)
        if _status(exc) is None:
            raise
        print(
            f"launch: Kubernetes API: {_status(exc)} {getattr(exc, 'reason', '')}", file=sys.stderr
        )
        return EXIT_ERROR
    write_summary(summary_markdown(outcome, job["metadata"]["name"]))
    if outcome.detail:
        print(f"launch: {outcome.detail}", file=sys.stderr)
    print(f"launch: promotion Job exited {outcome.code}", file=sys.stderr)
    return outcome.code


if __name__ == "__main__":
    run_cli(main)
