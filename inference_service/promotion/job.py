"""The promotion Job's life in the cluster: create it, hand it the candidate, follow its
pod's log and return its exit code.

Kept apart from the launcher's CLI (`launch.py`, which renders the Job and mirrors the outcome
into CI) because this is the part that talks to the Kubernetes API, with every wait bounded by
one deadline and every API answer that means "it cannot finish" turned into a `LaunchError`
(and the Job deleted, so the in-cluster lock is free). The API objects are injected (a fake
in the unit tests), as are the clock and the sleep.

One promotion at a time: the Job has a fixed name, so creating it is the in-cluster lock (the
API server refuses a second one with 409). A finished Job of that name is deleted first; a
running one makes this exit 4 without touching it. The candidate ConfigMap is created only
after the Job exists, owned by it, so a refused launch never changes what a running promotion
reads.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from helper.errors import PlatformError
from inference_service.promotion.cli import EXIT_ERROR, EXIT_LOCKED

CANDIDATE_CONFIGMAP = "promotion-candidate"
CANDIDATE_KEY = ".env.best_run"
CONTAINER = "promotion"
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


def api_status(exc: Exception) -> int | None:
    return getattr(exc, "status", None)


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
            if api_status(exc) is None:
                raise
            self._delete(name)  # e.g. 403 on the ConfigMap: the pod would wait for it forever
            raise LaunchError(
                f"Kubernetes API refused a call: {api_status(exc)} {getattr(exc, 'reason', '')} "
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
            if api_status(exc) == 409:
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
            if api_status(exc) != 409:
                raise
            self.core.replace_namespaced_config_map(CANDIDATE_CONFIGMAP, self.namespace, body)

    def _delete(self, name: str) -> None:
        try:
            self.batch.delete_namespaced_job(name, self.namespace, propagation_policy="Background")
        except Exception as exc:
            if api_status(exc) != 404:
                raise

    def _read_job(self, name: str):
        try:
            return self.batch.read_namespaced_job(name, self.namespace)
        except Exception as exc:
            if api_status(exc) == 404:
                return None
            raise

    # --- following the pod -----------------------------------------------------------------
    def _read_pod(self, pod):
        """The pod now, or None once it is gone (the Job controller deletes it at the deadline)."""
        try:
            return self.core.read_namespaced_pod(pod.metadata.name, self.namespace)
        except Exception as exc:
            if api_status(exc) == 404:
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
