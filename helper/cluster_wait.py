"""Wait for a cluster job to end: success, failure or a bounded timeout, whichever comes first.

`kubectl wait --for=jsonpath=…=Succeeded` waits the whole timeout when a job fails. This polls
the object's status instead and stops on the first terminal value: exit 0 on success, exit 1 on
a failure state (printing the status, the object's message and where to look) or on timeout.
Statuses are matched with shell-style patterns, e.g. a RayJob's
`{.status.jobDeploymentStatus}/{.status.jobStatus}` against `Complete/SUCCEEDED` and
`Failed/*,*/FAILED,*/STOPPED` (KubeRay ray-operator/apis/ray/v1/rayjob_types.go).

    python -m helper.cluster_wait sparkapplication/iris-etl -n ml-platform --timeout 30m \\
        --status '{.status.phase}' --success Succeeded --failure Failed --hint 'task data:logs'
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from helper.errors import run_cli

_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def parse_duration(text: str) -> float:
    """`90s`, `30m`, `1h30m` (as kubectl takes them) -> seconds."""
    match = _DURATION.match(text.strip())
    if not text.strip() or not match:
        raise ValueError(f"timeout '{text}' is not a duration such as 30m or 90s")
    h, m, s = (int(g or 0) for g in match.groups())
    return float(h * 3600 + m * 60 + s)


def classify(status: str, success: list[str], failure: list[str]) -> str | None:
    """'failure' beats 'success' when both match; None while the job is still going."""
    if any(fnmatch.fnmatchcase(status, p) for p in failure):
        return "failure"
    if any(fnmatch.fnmatchcase(status, p) for p in success):
        return "success"
    return None


@dataclass(frozen=True)
class Outcome:
    result: str  # success | failure | timeout
    status: str
    waited_s: float


def wait(
    read_status: Callable[[], str | None],
    success: list[str],
    failure: list[str],
    timeout_s: float,
    interval_s: float = 10.0,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    report: Callable[[str], None] = print,
) -> Outcome:
    """Poll until a terminal status or the deadline; `read_status` returns None on a read error."""
    start = clock()
    last = None
    while True:
        status = read_status()
        if status is not None and status != last:
            report(f"status: {status or '(none yet)'}")
            last = status
        verdict = classify(status, success, failure) if status is not None else None
        if verdict:
            return Outcome(verdict, status, clock() - start)
        if clock() - start >= timeout_s:
            return Outcome("timeout", last or "", clock() - start)
        sleep(min(interval_s, max(0.0, timeout_s - (clock() - start))))


def kubectl_jsonpath(ref: str, namespace: str, jsonpath: str) -> str | None:
    proc = subprocess.run(
        ["kubectl", "get", ref, "-n", namespace, "-o", f"jsonpath={jsonpath}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        print(f"kubectl get {ref}: {proc.stderr.strip()}", file=sys.stderr)
        return None
    return proc.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ref", help="kind/name, e.g. rayjob/iris-tune")
    parser.add_argument("-n", "--namespace", required=True)
    parser.add_argument("--status", required=True, help="kubectl jsonpath of the status")
    parser.add_argument("--success", required=True, help="comma-separated patterns")
    parser.add_argument("--failure", required=True, help="comma-separated patterns")
    parser.add_argument("--timeout", default="30m")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between polls")
    parser.add_argument("--message", help="jsonpath of a message printed on failure")
    parser.add_argument("--hint", default="", help="what to run to see why, printed on failure")
    args = parser.parse_args(argv)
    try:
        timeout_s = parse_duration(args.timeout)
    except ValueError as exc:
        parser.error(str(exc))
    print(f"waiting for {args.ref} in {args.namespace} (at most {args.timeout})")
    outcome = wait(
        lambda: kubectl_jsonpath(args.ref, args.namespace, args.status),
        args.success.split(","),
        args.failure.split(","),
        timeout_s,
        args.interval,
    )
    if outcome.result == "success":
        print(f"{args.ref}: {outcome.status} after {outcome.waited_s:.0f} s")
        return 0
    what = "FAILED" if outcome.result == "failure" else f"timed out after {args.timeout}"
    print(f"{args.ref} {what}: status {outcome.status or '(none)'}", file=sys.stderr)
    if args.message and outcome.result == "failure":
        message = kubectl_jsonpath(args.ref, args.namespace, args.message)
        if message:
            print(f"  message: {message}", file=sys.stderr)
    print(f"  see: kubectl describe {args.ref} -n {args.namespace}", file=sys.stderr)
    if args.hint:
        print(f"  and: {args.hint}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    run_cli(main)
