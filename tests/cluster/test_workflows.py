"""GitHub workflows pass zizmor (offline) and the workflow JSON schema, and follow house rules:
actions pinned by full commit SHA with a version comment, least permissions, a concurrency group,
no persisted checkout credentials."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helper.settings import REPO_ROOT

pytestmark = pytest.mark.cluster

WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.y*ml"))
PINNED = re.compile(r"uses:\s*([\w.-]+/[\w./-]+)@([0-9a-f]{40})\s+#\s*v\d+(\.\d+)*\s*$")
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    assert path, f"{name} is not installed in the environment (uv sync --dev)"
    return str(path)


def _id(path: Path) -> str:
    return path.name


def test_ci_workflow_exists():
    assert REPO_ROOT / ".github/workflows/ci.yml" in WORKFLOWS


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=_id)
def test_zizmor_offline_is_clean(workflow):
    proc = subprocess.run(
        [_tool("zizmor"), "--offline", "--no-progress", str(workflow)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_all_workflows_match_github_workflow_schema():
    """One check-jsonschema run for every file (its start-up is the slow part)."""
    proc = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows"]
        + [str(w) for w in WORKFLOWS],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=_id)
def test_every_action_is_pinned_by_sha_with_version_comment(workflow):
    lines = [ln for ln in workflow.read_text().splitlines() if re.search(r"^\s*-?\s*uses:", ln)]
    assert lines, "a workflow with no actions is unexpected here"
    unpinned = [ln.strip() for ln in lines if "./" not in ln and not PINNED.search(ln)]
    assert unpinned == []


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=_id)
def test_least_permissions_concurrency_and_no_persisted_credentials(workflow):
    doc = yaml.safe_load(workflow.read_text())
    assert doc.get("permissions") in ({}, {"contents": "read"}), "top-level permissions too wide"
    assert "group" in (doc.get("concurrency") or {})
    for name, job in doc["jobs"].items():
        assert "permissions" in job, f"job {name} inherits permissions instead of declaring them"
        for step in job.get("steps", []):
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                assert (step.get("with") or {}).get("persist-credentials") is False, name


def test_ci_covers_lint_tests_validation_terraform_and_images():
    text = (REPO_ROOT / ".github/workflows/ci.yml").read_text()
    doc = yaml.safe_load(text)
    triggers = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` key as True
    assert {"push", "pull_request"} <= set(triggers)
    for needle in (
        "ruff check",
        "./task test",
        "./task validate",
        "fmt -check",
        "init -backend=false",
        'terraform -chdir="${root}" validate',
        "docker/build-push-action@",
    ):
        assert needle in text, needle
    for dockerfile in ("data_platform/", "ml_platform/", "inference_service/"):
        assert f"{dockerfile}Dockerfile" in text
        assert (REPO_ROOT / dockerfile / "Dockerfile").is_file()
