"""Offline validation of every Kubernetes manifest the repo deploys.

Nothing here can reach a cluster, so the manifests are checked as deeply as local tools allow:
each kustomize target is rendered with `kubectl kustomize`, core kinds are validated strictly with
`kubernetes-validate`, custom resources against the JSON schemas in `CRD_SCHEMA_DIR` (kubeconform
layout: `<group>/<kind>_<version>.json`), and every workload must meet the platform's pod policy.
A custom resource without a schema is an error: an unchecked object must never pass quietly.

Checkov (run in its own tool environment, it conflicts with ray's pins) is available through
`run_checkov` / `--checkov`.

    python -m helper.validate [--checkov] [TARGET_DIR ...]
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

from helper.errors import PlatformError, run_cli

# the pod policy lives in helper/pod_policy.py; re-exported for existing importers
from helper.pod_policy import (  # noqa: F401
    EXCEPTION_PREFIX,
    WAIVABLE,
    Container,
    check_policy,
    pod_specs,
    workload_containers,
)
from helper.settings import REPO_ROOT, Settings, get_settings

CHECKOV = "checkov==3.3.30"


@dataclass(frozen=True)
class Finding:
    """One problem, named precisely enough to fix without re-running anything."""

    target: str
    obj: str
    check: str
    message: str

    def __str__(self) -> str:
        return f"{self.target}: {self.obj}: [{self.check}] {self.message}"


@dataclass
class Report:
    targets: dict[str, int] = field(default_factory=dict)  # target -> number of objects
    findings: list[Finding] = field(default_factory=list)
    unchecked_custom: list[str] = field(default_factory=list)  # when CRD_SCHEMA_DIR is unset

    @property
    def ok(self) -> bool:
        return not self.findings and not self.unchecked_custom


class RenderError(PlatformError, RuntimeError):
    pass


# --- discovery and rendering ---------------------------------------------------------------------


def discover_targets(root: Path = REPO_ROOT) -> list[Path]:
    """Every overlay of every area, plus the cluster-wide platform targets (base, knative, aws)."""
    found = sorted(p.parent for p in root.glob("*/k8s/overlays/*/kustomization.yaml"))
    found += sorted(p.parent for p in root.glob("platform/k8s/*/kustomization.yaml"))
    return found


def render(target: Path) -> list[dict]:
    """`kubectl kustomize TARGET` parsed into objects; failures raise with kubectl's words."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise RenderError("kubectl not found on PATH (it renders kustomize targets)")
    proc = subprocess.run(
        [kubectl, "kustomize", str(target)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RenderError(f"kubectl kustomize {target} failed: {proc.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def object_name(obj: dict) -> str:
    return f"{obj.get('kind', '?')}/{(obj.get('metadata') or {}).get('name', '?')}"


def is_core(api_version: str) -> bool:
    """Core kinds: the legacy group (`v1`), dot-less groups (`apps/v1`) and `*.k8s.io` groups."""
    if "/" not in api_version:
        return True
    group = api_version.split("/", 1)[0]
    return "." not in group or group.endswith(".k8s.io")


# --- schema validation ---------------------------------------------------------------------------


def validate_core(obj: dict, k8s_version: str) -> list[str]:
    try:
        kubernetes_validate.validate(obj, k8s_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path) or "(root)"
        return [f"{where}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [exc.message]
    return []


def crd_schema_path(schema_dir: Path, obj: dict) -> Path:
    group, _, version = obj["apiVersion"].rpartition("/")
    return schema_dir / group / f"{obj['kind'].lower()}_{version}.json"


@functools.lru_cache(maxsize=64)
def _validator(path: Path) -> jsonschema.protocols.Validator:
    schema = json.loads(path.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return cls(schema)


def validate_custom(obj: dict, schema_dir: Path) -> list[str]:
    path = crd_schema_path(schema_dir, obj)
    if not path.is_file():
        return [f"no schema for {obj['apiVersion']} {obj['kind']} (looked for {path})"]
    errors = sorted(_validator(path).iter_errors(obj), key=lambda e: list(map(str, e.path)))
    return [f"{'.'.join(str(p) for p in e.path) or '(root)'}: {e.message}" for e in errors]


# --- putting it together -------------------------------------------------------------------------


def validate_objects(
    objs: Iterable[dict], target: str, settings: Settings, report: Report
) -> Report:
    """Validate already-rendered objects into `report` (tests feed hand-made objects here)."""
    schema_dir = settings.crd_schema_dir
    for obj in objs:
        name = object_name(obj)
        report.targets[target] = report.targets.get(target, 0) + 1
        if is_core(obj.get("apiVersion", "")):
            messages = [("schema", m) for m in validate_core(obj, settings.k8s_version)]
        elif schema_dir is None:
            report.unchecked_custom.append(f"{target}: {name}")
            messages = []
        else:
            messages = [("schema", m) for m in validate_custom(obj, Path(schema_dir))]
        messages += check_policy(obj)
        report.findings += [Finding(target, name, check, msg) for check, msg in messages]
    return report


def validate_targets(
    targets: Iterable[Path], settings: Settings | None = None, cross_checks: bool = True
) -> Report:
    """Each target alone (schemas, policy), then all of them together (helper/consistency.py:
    names that must agree across files, admission rules, the stack and image schemes)."""
    settings = settings or get_settings()
    report = Report()
    rendered: dict[Path, list[dict]] = {}
    for target in targets:
        label = _label(target)
        try:
            objs = render(target)
        except RenderError as exc:
            report.findings.append(Finding(label, "-", "render", str(exc)))
            continue
        rendered[Path(target)] = objs
        validate_objects(objs, label, settings, report)
    if cross_checks and rendered:
        from helper.consistency import check_rendered

        report.findings += check_rendered({_label(t): (t, o) for t, o in rendered.items()})
    return report


def _label(target: Path) -> str:
    try:
        return str(Path(target).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(target)


# --- checkov -------------------------------------------------------------------------------------


def run_checkov(targets: Iterable[Path], workdir: Path) -> dict[str, list[dict]]:
    """Render every target into `workdir` and run checkov once over all of them.

    Returns {"failed": [...], "skipped": [...]} (check_id, resource, file, reason). Skips must be
    justified inline with `checkov.io/skipN: CKV_…=reason` annotations, which checkov honours.
    """
    uvx = shutil.which("uvx")
    if uvx is None:
        raise RenderError("uvx not found on PATH (checkov runs in its own tool environment)")
    for target in targets:
        docs = render(target)
        out = workdir / (_label(target).replace("/", "_") + ".yaml")
        out.write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")
    cmd = [uvx, CHECKOV, "--framework", "kubernetes", "--skip-download", "--compact"]
    cmd += ["--output", "json", "--directory", str(workdir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    try:
        parsed = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise RenderError(
            f"checkov gave no JSON (rc={proc.returncode}): {proc.stderr[-2000:]}"
        ) from exc
    reports = parsed if isinstance(parsed, list) else [parsed]
    out: dict[str, list[dict]] = {"failed": [], "skipped": []}
    for rep in reports:
        results = rep.get("results") or {}
        for kind in out:
            for check in results.get(f"{kind}_checks") or []:
                out[kind].append(
                    {
                        "check_id": check.get("check_id"),
                        "name": check.get("check_name"),
                        "resource": check.get("resource"),
                        "file": check.get("file_path"),
                        "reason": (check.get("check_result") or {}).get("suppress_comment"),
                    }
                )
    return out


# --- CLI -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", type=Path, help="kustomize dirs (default: all)")
    parser.add_argument("--checkov", action="store_true", help="also run checkov (needs uvx)")
    args = parser.parse_args(argv)
    settings = get_settings()
    targets = args.targets or discover_targets()
    report = validate_targets(targets, settings)
    for label, count in report.targets.items():
        print(f"rendered {label}: {count} objects")
    for finding in report.findings:
        print(f"ERROR {finding}")
    if report.unchecked_custom:
        print(
            f"ERROR CRD_SCHEMA_DIR is unset: {len(report.unchecked_custom)} custom resources "
            "were not validated (set it to a kubeconform-layout schema directory):"
        )
        for name in report.unchecked_custom:
            print(f"  {name}")
    rc = 0 if report.ok else 1
    if args.checkov:
        with tempfile.TemporaryDirectory(prefix="checkov-") as tmp:
            failed = run_checkov(targets, Path(tmp))["failed"]
        for f in failed:
            print(f"CHECKOV {f['check_id']} {f['resource']} ({f['file']}): {f['name']}")
        print(f"checkov: {len(failed)} failed checks")
        rc = rc or (1 if failed else 0)
    print("validation passed" if rc == 0 else "validation FAILED")
    return rc


if __name__ == "__main__":
    run_cli(main)
