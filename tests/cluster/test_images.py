"""The image scheme (helper/images.py): one place names registry and release, CI pushes
exactly the images the manifests run, with immutable tags, only after the tests passed."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from helper import images
from helper.settings import REPO_ROOT

pytestmark = pytest.mark.cluster

CI = REPO_ROOT / ".github/workflows/ci.yml"
SHA = "0123456789abcdef0123456789abcdef01234567"  # pragma: allowlist secret (a fake commit)


@pytest.fixture(scope="module")
def scheme() -> images.ImageScheme:
    return images.load_scheme()


@pytest.fixture(scope="module")
def image_job() -> dict:
    return yaml.safe_load(CI.read_text())["jobs"]["images"]


def test_release_tag_is_the_project_version(scheme):
    assert scheme.release_tag == f"v{images.project_version()}"


def test_ci_builds_exactly_the_scheme_images_from_this_repos_dockerfiles(scheme, image_job):
    matrix = image_job["strategy"]["matrix"]["include"]
    assert [m["name"] for m in matrix] == list(scheme.names)
    for entry in matrix:
        assert (REPO_ROOT / entry["dockerfile"]).is_file()


def test_ci_pushes_only_after_lint_tests_and_validation(image_job):
    assert {"lint", "test", "validate"} <= set(image_job["needs"])
    steps = image_job["steps"]
    plan = next(s for s in steps if s.get("id") == "plan")
    assert "helper.images ci" in plan["run"] and plan.get("shell") == "bash"
    build = next(s for s in steps if str(s.get("uses", "")).startswith("docker/build-push-action"))
    assert build["with"]["push"] == "${{ steps.plan.outputs.push == 'true' }}"
    assert build["with"]["tags"] == "${{ steps.plan.outputs.tags }}"


def test_only_the_scheme_names_the_registry_owner(scheme):
    """Forks change one file: no other committed file spells the registry/owner."""
    hits = subprocess.run(
        ["git", "grep", "-l", "-F", scheme.registry + "/", "--", ":!*.md", ":!tests/"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert hits == ["platform/images/kustomization.yaml"]


@pytest.mark.parametrize(
    ("event", "ref", "push", "tag"),
    [
        ("pull_request", "refs/pull/7/merge", False, f"sha-{SHA}"),
        ("push", "refs/heads/feature", False, f"sha-{SHA}"),
        ("push", "refs/heads/main", True, f"sha-{SHA}"),
        ("push", "refs/tags/v0.1.0", True, "v0.1.0"),
    ],
)
def test_ci_plan(scheme, event, ref, push, tag):
    plan = images.ci_plan(
        scheme, "tune", event=event, ref=ref, sha=SHA, owner="ML-Platform", version="0.1.0"
    )
    assert plan.push is push
    assert plan.tags == (f"{scheme.registry}/tune:{tag}",)


@pytest.mark.parametrize(
    ("ref", "owner", "version", "message"),
    [
        ("refs/heads/main", "alice", "0.1.0", "change the newName prefixes to ghcr.io/alice"),
        ("refs/tags/v0.2.0", "ml-platform", "0.1.0", "must equal v<pyproject version>"),
        ("refs/tags/v0.2.0", "ml-platform", "0.2.0", "newTag of platform/images"),
    ],
)
def test_ci_plan_refuses_pushes_that_do_not_fit(scheme, ref, owner, version, message):
    with pytest.raises(images.SchemeError, match=message):
        images.ci_plan(scheme, "etl", event="push", ref=ref, sha=SHA, owner=owner, version=version)


def test_retag_sets_only_our_images_and_refuses_mutable_tags(scheme):
    objs = [
        {
            "spec": {
                "containers": [
                    {"image": f"{scheme.registry}/etl:v0.1.0"},
                    {"image": "busybox:1.36"},
                ]
            }
        },
        {"spec": {"sparkImage": {"custom": f"{scheme.registry}/etl:v0.1.0"}}},
    ]
    out = images.retag(objs, scheme, f"sha-{SHA}")
    assert out[0]["spec"]["containers"][0]["image"].endswith(f"etl:sha-{SHA}")
    assert out[0]["spec"]["containers"][1]["image"] == "busybox:1.36"
    assert out[1]["spec"]["sparkImage"]["custom"].endswith(f"etl:sha-{SHA}")
    for bad in ("latest", "dev", "sha-abc", "0.1.0"):
        with pytest.raises(images.SchemeError):
            images.retag(objs, scheme, bad)


def test_dev_deploys_take_the_commit_tag_prod_the_release():
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert images.deploy_tag("dev") == f"sha-{head}"
    assert images.deploy_tag("prod") is None
    assert images.deploy_tag("prod", "v0.1.0") == "v0.1.0"
