"""The KServe target's patches, applied to the rendered InferenceService, still validate
against the InferenceService CRD schema (as the API server would check them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helper import validate
from helper.settings import REPO_ROOT, load_settings
from inference_service.promotion.registry import ModelRef
from inference_service.promotion.targets.kserve import (
    canary_patch,
    deployed_from,
    first_deploy_patch,
    merge_patch,
    promote_patch,
    rollback_patch,
    step_patch,
)

pytestmark = pytest.mark.cluster

OVERLAY = REPO_ROOT / "inference_service" / "k8s" / "overlays" / "prod"
# ../shared is where every developer and CI runner has the schemas (see shared/README.md)
DEFAULT_SCHEMAS = REPO_ROOT.parent / "shared" / "crd-schemas"
REF = ModelRef("iris-classifier", "7", "s3://ml-platform/mlflow/1/models/m-abc/artifacts")


@pytest.fixture(scope="module")
def settings():
    s = load_settings()
    schema_dir = Path(s.crd_schema_dir or DEFAULT_SCHEMAS)
    assert (schema_dir / "serving.kserve.io").is_dir(), (
        f"no KServe CRD schemas under {schema_dir}: set CRD_SCHEMA_DIR "
        "(`task platform:crd-schemas` downloads them)"
    )
    return s.model_copy(update={"crd_schema_dir": schema_dir})


@pytest.fixture(scope="module")
def isvc() -> dict:
    objs = validate.render(OVERLAY)
    return next(o for o in objs if o["kind"] == "InferenceService")


def findings(obj: dict, settings) -> list[str]:
    report = validate.validate_objects([obj], "promotion", settings, validate.Report())
    return [str(f) for f in report.findings]


def test_the_rendered_base_is_valid(isvc, settings):
    assert findings(isvc, settings) == []


@pytest.mark.parametrize(
    "steps",
    [
        [first_deploy_patch(REF)],
        [canary_patch(REF, 10)],
        [canary_patch(REF, 10), promote_patch(REF)],
        [canary_patch(REF, 10), rollback_patch(REF.version)],
        [canary_patch(REF, 20), step_patch(40), step_patch(60), promote_patch(REF)],
        [canary_patch(REF, 20), step_patch(40), rollback_patch(REF.version)],
    ],
    ids=["first-deploy", "canary", "promote", "rollback", "steps-promote", "steps-rollback"],
)
def test_patched_inferenceservice_validates(isvc, settings, steps):
    obj = isvc
    for patch in steps:
        obj = merge_patch(obj, patch)
    assert findings(obj, settings) == []
    assert obj["spec"]["predictor"]["model"]["storageUri"] == REF.storage_uri


def test_patch_sequence_reads_back_as_the_expected_deployment(isvc):
    canary = merge_patch(
        merge_patch(isvc, first_deploy_patch(ModelRef("m", "6", "s3://b/6"))), canary_patch(REF, 10)
    )
    assert deployed_from(canary).canary == "7" and deployed_from(canary).champion == "6"
    assert canary["spec"]["predictor"]["canaryTrafficPercent"] == 10
    promoted = merge_patch(canary, promote_patch(REF))
    assert "canaryTrafficPercent" not in promoted["spec"]["predictor"]
    assert deployed_from(promoted).champion == "7"
    back = merge_patch(canary, rollback_patch("7"))
    assert back["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert deployed_from(back).champion == "6" and deployed_from(back).canary_percent == 0


def test_the_schema_check_catches_a_bad_patch(isvc, settings):
    """The validation is not vacuous: a wrongly typed field is reported."""
    bad = merge_patch(isvc, {"spec": {"predictor": {"canaryTrafficPercent": "ten"}}})
    assert any("canaryTrafficPercent" in f for f in findings(bad, settings))


def test_each_analysis_step_only_moves_the_canary_share(isvc):
    """The steps of the committed spec, patched one by one: same revision (storageUri),
    the share the spec names, and nothing else changes."""
    from inference_service.promotion.spec import load_spec

    spec = load_spec(load_settings().analysis_spec)
    champion = merge_patch(isvc, first_deploy_patch(ModelRef("m", "6", "s3://b/6")))
    obj = merge_patch(champion, canary_patch(REF, spec.step_weight))
    for weight in spec.weights:
        nxt = merge_patch(obj, step_patch(weight))
        assert nxt["spec"]["predictor"]["canaryTrafficPercent"] == weight
        without = {k: v for k, v in nxt["spec"]["predictor"].items() if k != "canaryTrafficPercent"}
        before = {k: v for k, v in obj["spec"]["predictor"].items() if k != "canaryTrafficPercent"}
        assert without == before and nxt["metadata"] == obj["metadata"]
        obj = nxt
    assert deployed_from(obj).canary_percent == spec.max_weight


def test_predictor_metrics_reach_the_cluster_prometheus(isvc):
    """What the cluster analysis relies on, across files: KServe's scraping annotations on
    the InferenceService, the runtime's metrics port/path, the NetworkPolicy admitting the
    monitoring namespace on the aggregate port, and the scrape job of platform/'s values."""
    import yaml

    objs = validate.render(OVERLAY)
    ann = isvc["metadata"]["annotations"]
    assert ann["serving.kserve.io/enable-prometheus-scraping"] == "true"
    assert ann["serving.kserve.io/enable-metric-aggregation"] == "true"
    runtime = next(o for o in objs if o["kind"] == "ServingRuntime")
    port = runtime["spec"]["containers"][0]["ports"][0]["containerPort"]
    assert runtime["spec"]["annotations"]["prometheus.kserve.io/port"] == str(port)
    assert runtime["spec"]["annotations"]["prometheus.kserve.io/path"] == "/metrics"
    policy = next(o for o in objs if o["kind"] == "NetworkPolicy")
    scrape = [
        rule
        for rule in policy["spec"]["ingress"]
        if any(
            (f.get("namespaceSelector") or {})
            .get("matchLabels", {})
            .get("kubernetes.io/metadata.name")
            == "monitoring"
            for f in rule["from"]
        )
    ]
    assert [p["port"] for r in scrape for p in r["ports"]] == [9088]  # qpext's aggregate port
    values = yaml.safe_load((REPO_ROOT / "platform" / "monitoring-values.yaml").read_text())
    job = values["prometheus"]["prometheusSpec"]["additionalScrapeConfigs"][0]
    assert job["kubernetes_sd_configs"][0]["namespaces"]["names"] == [isvc["metadata"]["namespace"]]
    assert job["honor_labels"] is True  # the predictor's own `revision` label wins
    from inference_service.promotion.targets.kserve import CLUSTER_SCRAPE_INTERVAL_S

    assert job["scrape_interval"] == f"{CLUSTER_SCRAPE_INTERVAL_S:.0f}s"
    svc = f"{values['fullnameOverride']}-prometheus.monitoring.svc:9090"
    assert load_settings().cluster_prometheus_url == f"http://{svc}"
