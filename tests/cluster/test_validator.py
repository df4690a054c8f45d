"""The validator can fail: each test breaks one real rendered object and expects a rejection."""

from __future__ import annotations

import copy
import json

import pytest

from helper import validate
from helper.settings import REPO_ROOT, load_settings

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def objects() -> dict[str, dict]:
    """One real object per kind, rendered from the prod overlays."""
    out = {}
    for area in ("data_platform", "ml_platform", "inference_service"):
        for obj in validate.render(REPO_ROOT / area / "k8s/overlays/prod"):
            out.setdefault(obj["kind"], obj)
    return out


@pytest.fixture
def crd_settings():
    settings = load_settings()
    if settings.crd_schema_dir is None:
        pytest.skip("CRD_SCHEMA_DIR is unset: no schemas to reject custom resources with")
    return settings


def _findings(obj, settings) -> list[validate.Finding]:
    return validate.validate_objects([obj], "test", settings, validate.Report()).findings


def _checks(obj, settings) -> set[str]:
    return {f.check for f in _findings(obj, settings)}


def test_untouched_objects_pass(objects, crd_settings):
    for obj in objects.values():
        assert _findings(obj, crd_settings) == []


def test_inference_service_with_unknown_field_is_rejected(objects, crd_settings):
    isvc = copy.deepcopy(objects["InferenceService"])
    isvc["spec"]["predictor"]["model"]["storageUrl"] = "s3://typo/of/storageUri"
    findings = _findings(isvc, crd_settings)
    assert any(f.check == "schema" and "storageUrl" in f.message for f in findings)


def test_spark_application_with_wrong_type_is_rejected(objects, crd_settings):
    app = copy.deepcopy(objects["SparkApplication"])
    app["spec"]["executor"]["replicas"] = "two"
    findings = _findings(app, crd_settings)
    assert any(f.check == "schema" and "executor.replicas" in f.message for f in findings)


def test_deployment_without_resource_limits_is_rejected(objects):
    dep = copy.deepcopy(objects["Deployment"])
    del dep["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    findings = _findings(dep, load_settings(crd_schema_dir=None))
    assert {f.message.rsplit(": ", 1)[1] for f in findings if f.check == "resources"} == {
        "no cpu limit",
        "no memory limit",
    }


def test_deployment_with_unknown_field_is_rejected_strictly(objects):
    dep = copy.deepcopy(objects["Deployment"])
    dep["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    assert "schema" in _checks(dep, load_settings(crd_schema_dir=None))


def test_custom_resource_without_schema_fails(objects, tmp_path):
    findings = _findings(objects["RayJob"], load_settings(crd_schema_dir=tmp_path))
    assert [f.check for f in findings] == ["schema"]
    assert "no schema for ray.io/v1 RayJob" in findings[0].message


def test_custom_resource_is_checked_against_the_schema_it_finds(objects, tmp_path):
    (tmp_path / "ray.io").mkdir()
    schema = {"type": "object", "properties": {"spec": {"required": ["nonexistent"]}}}
    (tmp_path / "ray.io" / "rayjob_v1.json").write_text(json.dumps(schema))
    findings = _findings(objects["RayJob"], load_settings(crd_schema_dir=tmp_path))
    assert any("nonexistent" in f.message for f in findings)


def test_unset_schema_dir_reports_custom_resources_as_unchecked(objects):
    report = validate.validate_objects(
        [objects["RayJob"]], "t", load_settings(crd_schema_dir=None), validate.Report()
    )
    assert report.unchecked_custom == ["t: RayJob/iris-tune"]
    assert not report.ok


@pytest.mark.parametrize(
    ("field", "value", "check"),
    [
        ("privileged", True, "privileged"),
        ("allowPrivilegeEscalation", True, "allowPrivilegeEscalation"),
        ("runAsNonRoot", False, "runAsNonRoot"),
        ("readOnlyRootFilesystem", False, "readOnlyRootFilesystem"),
    ],
)
def test_container_security_policy(objects, field, value, check):
    dep = copy.deepcopy(objects["Deployment"])
    dep["spec"]["template"]["spec"]["containers"][0]["securityContext"][field] = value
    assert check in _checks(dep, load_settings(crd_schema_dir=None))


def test_read_only_waiver_needs_a_reason_and_only_covers_that_check(objects):
    settings = load_settings(crd_schema_dir=None)
    app = copy.deepcopy(objects["SparkApplication"])
    assert _findings(app, settings) == []  # the committed waiver has a reason
    app["metadata"]["annotations"]["policy.ml-platform.io/readOnlyRootFilesystem"] = " "
    assert {"waiver", "readOnlyRootFilesystem"} <= _checks(app, settings)
    app["metadata"]["annotations"]["policy.ml-platform.io/runAsNonRoot"] = "because"
    assert any("cannot be waived" in f.message for f in _findings(app, settings))


def test_spark_role_without_resources_is_rejected(objects):
    app = copy.deepcopy(objects["SparkApplication"])
    del app["spec"]["driver"]["config"]["resources"]["cpu"]["max"]
    findings = _findings(app, load_settings(crd_schema_dir=None))
    assert [f.message for f in findings] == ["spec.driver[spark]: no cpu limit"]


def test_ray_worker_running_as_root_is_rejected(objects):
    job = copy.deepcopy(objects["RayJob"])
    worker = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]
    worker["securityContext"]["runAsNonRoot"] = False
    findings = _findings(job, load_settings(crd_schema_dir=None))
    assert [f.check for f in findings] == ["runAsNonRoot"]
    assert findings[0].message.startswith("workerGroupSpecs[0]")


def test_broken_kustomization_is_a_render_finding(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n")
    report = validate.validate_targets([tmp_path], load_settings(crd_schema_dir=None))
    assert [f.check for f in report.findings] == ["render"]


def test_cli_exit_code_reflects_findings(tmp_path, capsys):
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n")
    assert validate.main([str(tmp_path)]) == 1
    assert "validation FAILED" in capsys.readouterr().out
