"""Run the promotion inside the cluster as a Kubernetes Job, and mirror its outcome.

CI (`.github/workflows/promote.yml`) reaches only the Kubernetes API: MLflow is a ClusterIP
service, the InferenceService URLs are cluster-local and the predictor wants a bearer token
that lives in a Secret. So the runner starts `python -m inference_service.promotion` as a Job
(rendered from `inference_service/k8s/overlays/promotion-<env>`), streams its log, writes the
report to `$GITHUB_STEP_SUMMARY` and exits with the promotion's own exit code.

This module is the CLI: it renders the Job (with `--model-version` and extra env), checks that
the candidate (`.env.best_run` of the commit being promoted) is a version of the model the
Job's InferenceService serves, and turns the outcome into CI's summary and exit code. Running
the Job in the cluster (one at a time, the candidate ConfigMap, every wait bounded) is `job.py`.

    python -m inference_service.promotion.launch [--env-name dev|prod]
        [--manifest FILE | --kustomize DIR] [--best-run FILE] [--model-version V]
        [--env KEY=VALUE ...] [--timeout-s S]
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from helper.errors import run_cli
from inference_service.promotion.cli import EXIT_ERROR
from inference_service.promotion.job import CONTAINER, JobLauncher, LaunchError, Outcome, api_status

OVERLAYS = Path("inference_service/k8s/overlays")  # promotion-<env>: env = the serving overlay
REPORT_HEADING = "## Promotion of "


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
        if api_status(exc) is None:
            raise
        print(
            f"launch: Kubernetes API: {api_status(exc)} {getattr(exc, 'reason', '')}",
            file=sys.stderr,
        )
        return EXIT_ERROR
    write_summary(summary_markdown(outcome, job["metadata"]["name"]))
    if outcome.detail:
        print(f"launch: {outcome.detail}", file=sys.stderr)
    print(f"launch: promotion Job exited {outcome.code}", file=sys.stderr)
    return outcome.code


if __name__ == "__main__":
    run_cli(main)
