"""Admission rules the schemas cannot express (helper/admission.py), each shown to reject a
mutated copy of a real rendered object, and the platform config they are checked against."""

from __future__ import annotations

import copy

import pytest
import yaml

from helper import admission, validate
from helper.settings import REPO_ROOT

pytestmark = pytest.mark.cluster

FEATURES = REPO_ROOT / "platform/k8s/knative/config-features.yaml"


@pytest.fixture(scope="module")
def serving() -> list[dict]:
    return validate.render(REPO_ROOT / "inference_service/k8s/overlays/canary")


@pytest.fixture(scope="module")
def etl() -> list[dict]:
    return validate.render(REPO_ROOT / "data_platform/k8s/overlays/prod")


@pytest.fixture(scope="module")
def flags() -> dict[str, str]:
    return admission.knative_flags(validate.render(REPO_ROOT / "platform/k8s/knative"))


def _one(objs: list[dict], kind: str) -> dict:
    return copy.deepcopy(next(o for o in objs if o["kind"] == kind))


def test_committed_objects_pass(serving, etl, flags):
    for obj in serving + etl:
        assert admission.findings(obj, serving, flags) == [], obj["kind"]


def test_config_features_sets_only_known_flags_with_valid_values():
    data = yaml.safe_load(FEATURES.read_text())["data"]
    assert set(data) <= set(admission.KNATIVE_DEFAULTS)
    assert set(data.values()) <= {"enabled", "disabled", "allowed"}


def test_platform_install_applies_the_config_features_manifest():
    text = (REPO_ROOT / "platform/Taskfile.yml").read_text()
    assert "kubectl apply --server-side --field-manager=ml-platform -k platform/k8s/knative" in text


POD_SECURITY = {"runAsUser": 10001, "fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}}


def test_pod_level_security_context_needs_the_knative_flag(serving, flags):
    """What main had: spec.predictor.securityContext — Knative's webhook rejects the ksvc."""
    isvc = _one(serving, "InferenceService")
    isvc["spec"]["predictor"]["securityContext"] = POD_SECURITY
    found = admission.findings(isvc, serving, flags)
    assert any("kubernetes.podspec-securitycontext" in m for m in found), found
    enabled = {**flags, "kubernetes.podspec-securitycontext": "enabled"}
    assert admission.findings(isvc, serving, enabled) == []


def test_pod_level_fields_knative_never_allows(serving, flags):
    isvc = _one(serving, "InferenceService")
    isvc["spec"]["predictor"]["securityContext"] = {"sysctls": [{"name": "a", "value": "1"}]}
    enabled = {**flags, "kubernetes.podspec-securitycontext": "enabled"}
    assert any("sysctls" in m for m in admission.findings(isvc, serving, enabled))


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c.update(ports=[*c["ports"], {"containerPort": 9000}]), "2 container ports"),
        (lambda c: c["ports"][0].update(containerPort=8012), "reserved by Knative"),
        (lambda c: c["ports"][0].update(name="http"), "port name 'http'"),
        (lambda c: c["securityContext"].update(procMount="Unmasked"), "procMount"),
        (lambda c: c["securityContext"].update(privileged=True), "privileged may only be false"),
        (
            lambda c: c["securityContext"]["capabilities"].update(add=["NET_ADMIN"]),
            "containerspec-addcapabilities",
        ),
        (lambda c: c["env"].append({"name": "PORT", "value": "1"}), "env PORT is reserved"),
        (lambda c: c.update(lifecycle={"preStop": {}}), "lifecycle"),
    ],
    ids=[
        "two-ports",
        "reserved-port",
        "port-name",
        "procMount",
        "privileged",
        "add-cap",
        "env",
        "lifecycle",
    ],
)
def test_serving_runtime_container_rules(serving, flags, mutate, expected):
    runtime = _one(serving, "ServingRuntime")
    mutate(runtime["spec"]["containers"][0])
    found = admission.findings(runtime, serving, flags)
    assert any(expected in m for m in found), found


def test_empty_dir_needs_its_flag_and_pvc_is_off_by_default(serving, flags):
    runtime = _one(serving, "ServingRuntime")
    assert admission.findings(
        runtime, serving, {**flags, "kubernetes.podspec-volumes-emptydir": "disabled"}
    )
    runtime["spec"]["volumes"].append({"name": "d", "persistentVolumeClaim": {"claimName": "x"}})
    assert any("persistent-volume-claim" in m for m in admission.findings(runtime, serving, flags))


def test_node_selector_on_the_predictor_needs_its_flag(serving, flags):
    isvc = _one(serving, "InferenceService")
    isvc["spec"]["predictor"]["nodeSelector"] = {"pool": "cpu"}
    assert any("podspec-nodeselector" in m for m in admission.findings(isvc, serving, flags))


def test_canary_only_in_serverless_mode(serving, flags):
    isvc = _one(serving, "InferenceService")
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"]
    assert admission.findings(isvc, serving, flags) == []
    isvc["metadata"]["annotations"][admission.MODE_ANNOTATION] = "RawDeployment"
    found = admission.findings(isvc, serving, flags)
    assert any("no effect in RawDeployment" in m for m in found), found


def test_the_platform_installs_kserve_in_serverless_mode_without_istio():
    values = yaml.safe_load((REPO_ROOT / "platform/kserve-values.yaml").read_text())
    controller = values["kserve"]["controller"]
    assert admission.default_deployment_mode() == controller["deploymentMode"] == "Serverless"
    assert controller["gateway"]["disableIstioVirtualHost"] is True
    assert "-f platform/kserve-values.yaml" in (REPO_ROOT / "platform/Taskfile.yml").read_text()


def test_runtime_must_support_the_model_format_and_protocol(serving, flags):
    isvc = _one(serving, "InferenceService")
    isvc["spec"]["predictor"]["model"]["modelFormat"]["name"] = "onnx"
    isvc["spec"]["predictor"]["model"]["protocolVersion"] = "grpc-v2"
    found = " ".join(admission.findings(isvc, serving, flags))
    assert "modelFormat onnx" in found and "protocol grpc-v2" in found


def test_spark_pod_overrides_only_name_operator_containers(etl, flags):
    app = _one(etl, "SparkApplication")
    app["spec"]["driver"]["podOverrides"]["spec"]["containers"][0]["name"] = "driver"
    found = admission.findings(app, etl, flags)
    assert any("container 'driver' is not one the operator creates" in m for m in found)


def test_s3_connection_on_443_needs_tls(etl, flags):
    conn = _one(etl, "S3Connection")
    del conn["spec"]["tls"]
    assert any("plain HTTP" in m for m in admission.findings(conn, etl, flags))
