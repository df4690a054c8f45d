"""Secrets and machine state never reach git: a scanner with an audited baseline, and path rules."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from detect_secrets import SecretsCollection
from detect_secrets.settings import default_settings

from helper.settings import REPO_ROOT

FORBIDDEN = re.compile(
    r"(^|/)(terraform\.tfstate(\.backup)?|.*\.tfplan|tfplan|\.env|kubeconfig|.*\.pem|.*\.key|id_rsa"
    r"|backend\.hcl|\.terraform/.*)$"
)
BASELINE = REPO_ROOT / ".secrets.baseline"
# Machine-written benchmark results: temp paths and commit hashes look like high-entropy
# strings, and they change every run; the bench writes measured figures only, never env.
GENERATED = ("bench/results/",)


def repo_files() -> list[str]:
    """Tracked files plus untracked ones git does not ignore: what a commit would carry."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return sorted({f for f in out.splitlines() if (REPO_ROOT / f).is_file()})


def scan(files: list[str]) -> dict[str, set[str]]:
    """filename -> hashed secrets found, with detect-secrets' default plugins and filters."""
    secrets = SecretsCollection(root=str(REPO_ROOT))
    with default_settings():
        for name in files:
            secrets.scan_file(name)
    found: dict[str, set[str]] = {}
    for filename, secret in secrets:
        found.setdefault(filename, set()).add(secret.secret_hash)
    return found


def test_no_forbidden_files_would_be_committed():
    bad = [f for f in repo_files() if FORBIDDEN.search(f) and not f.endswith(".example")]
    assert bad == [], f"state, plans, keys or kubeconfigs must not be in git: {bad}"


def test_gitignore_covers_secrets_and_state():
    probes = [
        ".env",
        "terraform/envs/x/terraform.tfstate",
        "terraform/envs/x/.terraform/p",
        "kubeconfig",
        "k.pem",
        ".local/run/s3.pid",
    ]
    out = subprocess.run(
        ["git", "check-ignore", *probes], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout.split()
    assert sorted(out) == sorted(probes)


def test_no_unaudited_secrets():
    baseline = json.loads(BASELINE.read_text())["results"] if BASELINE.exists() else {}
    audited = {
        fname: {r["hashed_secret"] for r in rows if r.get("is_secret") is False}
        for fname, rows in baseline.items()
    }
    files = [f for f in repo_files() if f != ".secrets.baseline" and not f.startswith(GENERATED)]
    found = scan(files)
    new = {f: h - audited.get(f, set()) for f, h in found.items()}
    new = {f: h for f, h in new.items() if h}
    assert new == {}, f"possible secrets (audit them into .secrets.baseline or remove): {new}"


def test_scanner_can_fail(tmp_path, monkeypatch):
    """The scanner does find a credential-shaped string: the test above can fail."""
    leak = tmp_path / "leak.py"
    fake = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEYQ"  # pragma: allowlist secret
    leak.write_text(f'aws_secret_access_key = "{fake}"\n')
    secrets = SecretsCollection(root=str(tmp_path))
    with default_settings():
        secrets.scan_file("leak.py")
    assert len(list(secrets)) >= 1


@pytest.mark.parametrize("name", ["terraform/envs/p/terraform.tfstate", "a/.env", "x/kubeconfig"])
def test_forbidden_pattern_matches(name):
    assert FORBIDDEN.search(name)
