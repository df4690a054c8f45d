"""Every kustomize target renders and validates offline; checkov finds nothing unexplained.

Core kinds and the workload policy are checked always; custom resources need schemas from
CRD_SCHEMA_DIR (the one permitted skip when it is unset, reported by name).
"""

from __future__ import annotations

import re

import pytest
import yaml

from helper import stacks, validate
from helper.settings import REPO_ROOT, load_settings

pytestmark = pytest.mark.cluster

TARGETS = validate.discover_targets()
AREAS = ("data_platform", "ml_platform", "inference_service")


def _id(path) -> str:
    return str(path.relative_to(REPO_ROOT))


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    """Render each target once for the whole module (kubectl kustomize is the slow part)."""
    return {_id(t): validate.render(t) for t in TARGETS}


def test_every_area_has_dev_and_prod_overlays():
    found = {_id(t) for t in TARGETS}
    for area in AREAS:
        for env in ("dev", "prod"):
            assert f"{area}/k8s/overlays/{env}" in found


@pytest.mark.parametrize("target", TARGETS, ids=_id)
def test_core_kinds_and_policy(target, rendered):
    """Strict core schemas + pod policy, with custom-resource schemas switched off."""
    settings = load_settings(crd_schema_dir=None)
    report = validate.validate_objects(
        rendered[_id(target)], _id(target), settings, validate.Report()
    )
    assert report.findings == []
    assert report.targets[_id(target)] > 0


@pytest.mark.parametrize("target", TARGETS, ids=_id)
def test_custom_resources_against_crd_schemas(target, rendered):
    settings = load_settings()
    if settings.crd_schema_dir is None:
        pytest.skip("CRD_SCHEMA_DIR is unset: custom resources cannot be validated")
    report = validate.validate_objects(
        rendered[_id(target)], _id(target), settings, validate.Report()
    )
    assert report.unchecked_custom == []
    assert [str(f) for f in report.findings] == []


def test_no_object_lands_in_the_default_namespace(rendered):
    namespaced = [
        (label, validate.object_name(o))
        for label, objs in rendered.items()
        if not label.startswith("platform/")
        for o in objs
        if (o.get("metadata") or {}).get("namespace") != "ml-platform"
    ]
    assert namespaced == []


def test_no_secret_is_committed_in_any_render(rendered):
    kinds = {o["kind"] for objs in rendered.values() for o in objs}
    assert "Secret" not in kinds


def test_inference_service_storage_uri_comes_from_model_env(rendered):
    pinned = dict(
        line.split("=", 1)
        for line in (REPO_ROOT / "inference_service/k8s/base/model.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    isvc = next(
        o
        for o in rendered["inference_service/k8s/overlays/prod"]
        if o["kind"] == "InferenceService"
    )
    # the path is the pin's; the bucket is the one of the overlay's stack (platform/stacks)
    uri = isvc["spec"]["predictor"]["model"]["storageUri"]
    assert uri.split("/", 3)[3] == pinned["STORAGE_URI"].split("/", 3)[3]
    assert uri.split("/")[2] == stacks.read_stack("ionos-prod")["MLP_S3_BUCKET"]
    assert (
        isvc["metadata"]["annotations"]["ml-platform.io/model-version"] == pinned["MODEL_VERSION"]
    )


def test_canary_overlay_only_adds_traffic_split(rendered):
    prod = next(
        o
        for o in rendered["inference_service/k8s/overlays/prod"]
        if o["kind"] == "InferenceService"
    )
    canary = next(
        o
        for o in rendered["inference_service/k8s/overlays/canary"]
        if o["kind"] == "InferenceService"
    )
    percent = canary["spec"]["predictor"].pop("canaryTrafficPercent")
    assert 0 < percent < 100
    assert canary == prod


@pytest.fixture(scope="session")
def checkov_results(tmp_path_factory) -> dict[str, list[dict]]:
    """One checkov run (~20-30 s) over every rendered target, shared by the session."""
    return validate.run_checkov(TARGETS, tmp_path_factory.mktemp("checkov"))


@pytest.mark.slow
def test_checkov_has_no_failed_checks(checkov_results):
    assert checkov_results["failed"] == []


@pytest.mark.slow
def test_checkov_skips_are_all_justified(checkov_results):
    assert checkov_results["skipped"], "expected the documented skips to be seen by checkov"
    unexplained = [s for s in checkov_results["skipped"] if not (s["reason"] or "").strip()]
    assert unexplained == []


def _image_dockerfiles() -> dict[str, str]:
    """repository -> Dockerfile, as CI builds them (the registry from platform/images)."""
    from helper.images import load_scheme

    scheme = load_scheme()
    ci = yaml.safe_load((REPO_ROOT / ".github/workflows/ci.yml").read_text())
    matrix = ci["jobs"]["images"]["strategy"]["matrix"]["include"]
    return {scheme.repository(m["name"]): m["dockerfile"] for m in matrix}


def _module_file(command: str) -> str:
    """`python -m pkg.mod [args]` -> "pkg/mod.py"."""
    words = command.split()
    assert words[:2] == ["python", "-m"], command
    return words[2].replace(".", "/") + ".py"


def _all(rendered, kind):
    return [o for objs in rendered.values() for o in objs if o["kind"] == kind]


def test_entry_points_named_by_manifests_exist_in_the_repo(rendered):
    for app in _all(rendered, "SparkApplication"):
        path = app["spec"]["mainApplicationFile"].removeprefix("local:///app/")
        assert (REPO_ROOT / path).is_file(), path
    for job in _all(rendered, "RayJob"):
        assert (REPO_ROOT / _module_file(job["spec"]["entrypoint"])).is_file()
    for runtime in _all(rendered, "ServingRuntime"):
        container = runtime["spec"]["containers"][0]
        assert (REPO_ROOT / _module_file(" ".join(container["command"]))).is_file()
        assert "--model_dir=/mnt/models" in container["args"]


def test_every_image_comes_from_a_dockerfile_of_this_repo(rendered):
    images = set()
    for objs in rendered.values():
        for obj in objs:
            text = yaml.safe_dump(obj)
            images |= {m.split(":")[0] for m in re.findall(r"ghcr\.io/[\w./-]+:[\w.-]+", text)}
    expected = _image_dockerfiles()
    assert images == set(expected)
    for dockerfile in expected.values():
        assert (REPO_ROOT / dockerfile).is_file()
