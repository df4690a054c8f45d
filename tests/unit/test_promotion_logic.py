"""Promotion logic without processes or network: gates, analysis decision, traffic
accounting, lock, report, KServe target against an in-memory API."""

from __future__ import annotations

import json
import threading

import pytest

from helper.settings import REPO_ROOT, load_settings
from inference_service.promotion import cli
from inference_service.promotion.analysis import evaluate, run_steps, v2_body
from inference_service.promotion.gates import (
    check_metric,
    check_registry,
    check_signature,
    check_smoke,
)
from inference_service.promotion.lock import PromotionLock, PromotionLocked
from inference_service.promotion.registry import ModelRef, PromotionError
from inference_service.promotion.report import PromotionReport, write_report
from inference_service.promotion.spec import (
    AnalysisSpecError,
    load_spec,
    metric_names,
    parse_spec,
)
from inference_service.promotion.targets.kserve import (
    KServeTarget,
    merge_patch,
    ready_at,
    traffic_revisions,
)

SIG = [("a", "double"), ("b", "double")]
SPEC = load_spec(REPO_ROOT / "inference_service" / "promotion" / "analysis.yaml")


# --- gates ---------------------------------------------------------------------------------


def test_registry_gate_names_the_missing_version():
    check = check_registry("m", "9", found=False)
    assert not check.passed and "version 9" in check.detail
    assert check_registry("m", "9", found=True).passed


def test_signature_gate():
    assert check_signature(SIG, None).passed  # first model: nothing to compare with
    assert check_signature(list(reversed(SIG)), SIG).passed  # order does not matter by name
    dropped = check_signature(SIG[:1], SIG)
    assert not dropped.passed and "drops input(s) ['b']" in dropped.detail
    retyped = check_signature([("a", "double"), ("b", "string")], SIG)
    assert not retyped.passed and "b (double -> string)" in retyped.detail
    assert not check_signature([*SIG, ("c", "double")], SIG).passed


@pytest.mark.parametrize(
    ("cand", "champ", "passed", "word"),
    [
        (0.85, None, False, "below the minimum"),
        (0.95, None, True, "no champion"),
        (0.95, 0.96, True, "vs champion"),
        (0.93, 0.97, False, "worse than the champion"),
        (float("nan"), 0.9, False, "below"),
    ],
)
def test_metric_gate_for_a_higher_is_better_metric(cand, champ, passed, word):
    check = check_metric("accuracy", "max", cand, champ, min_metric=0.9, margin=0.02)
    assert check.passed is passed and word in check.detail


def test_metric_gate_for_a_lower_is_better_metric():
    assert check_metric("log_loss", "min", 0.2, 0.19, 0.5, 0.02).passed
    assert not check_metric("log_loss", "min", 0.6, None, 0.5, 0.02).passed  # above ceiling
    worse = check_metric("log_loss", "min", 0.3, 0.1, 0.5, 0.02)
    assert not worse.passed and worse.numbers["regression"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="mode"):
        check_metric("x", "up", 1, None, 0, 0)


def test_smoke_gate():
    assert check_smoke(True, 12.0, 100.0).passed
    assert not check_smoke(True, 120.0, 100.0).passed
    failed = check_smoke(False, None, 100.0, "exited with code 1")
    assert not failed.passed and "exited with code 1" in failed.detail


# --- analysis spec ----------------------------------------------------------------------------


def test_the_committed_spec_parses_and_steps_20_40_60():
    assert SPEC.weights == [20, 40, 60] and SPEC.threshold == 2 and SPEC.interval == 5.0
    assert [m.name for m in SPEC.metrics] == [
        "request-success-rate",
        "latency-p99-ratio",
        "class-distribution-distance",
    ]
    names = set().union(*(metric_names(m.query) for m in SPEC.metrics))
    assert names == {
        "inference_requests_total",
        "inference_request_duration_seconds_bucket",
        "inference_predictions_total",
    }


def spec_doc(**changes) -> dict:
    doc = {
        "interval": "5s",
        "threshold": 2,
        "stepWeight": 20,
        "maxWeight": 60,
        "metrics": [{"name": "ok", "query": 'up{revision="{revision}"}', "min": 1}],
    }
    return doc | changes


def metric(**changes) -> list[dict]:
    return [{"name": "ok", "query": 'up{revision="{revision}"}', "min": 1} | changes]


@pytest.mark.parametrize(
    ("doc", "field", "message"),
    [
        (spec_doc(threshold=0), "threshold", "greater than or equal to 1"),
        (spec_doc(stepWeight=150), "stepWeight", "less than or equal to 100"),
        (spec_doc(stepWeight=70), "", "stepWeight 70 is above maxWeight 60"),
        (spec_doc(interval="soon"), "interval", "not a duration"),
        (spec_doc(intervall="5s"), "intervall", "Extra inputs are not permitted"),
        (spec_doc(metrics=[]), "metrics", "at least 1 item"),
        (spec_doc(metrics=metric(min=None)), "metrics[0]", "give min, max or both"),
        (spec_doc(metrics=metric(max=0.5)), "metrics[0]", "min 1.0 is above max 0.5"),
        (spec_doc(metrics=metric(maxx=1)), "metrics[0].maxx", "Extra inputs"),
        (spec_doc(metrics=metric(query="up{x}")), "metrics[0].query", "unknown placeholder {x}"),
        (spec_doc(metrics=metric(query="up")), "metrics[0].query", "{revision}"),
        (spec_doc(metrics=metric() * 2), "", "metric name 'ok' is used twice"),
        (spec_doc(load={"rps": 0}), "load.rps", "greater than 0"),
    ],
)
def test_a_malformed_spec_is_one_line_naming_the_field(doc, field, message):
    with pytest.raises(AnalysisSpecError) as exc:
        parse_spec(doc)
    line = str(exc.value)
    assert "\n" not in line and message in line, line
    assert f"analysis spec {field}:" in line if field else line.startswith("analysis spec ")


def test_a_spec_file_that_is_not_yaml_or_missing_is_one_line(tmp_path):
    bad = tmp_path / "a.yaml"
    bad.write_text("interval: [5s\n")
    with pytest.raises(AnalysisSpecError, match=r"a.yaml: not valid YAML at line \d"):
        load_spec(bad)
    with pytest.raises(AnalysisSpecError, match="cannot read it"):
        load_spec(tmp_path / "missing.yaml")


def test_settings_point_at_the_committed_spec_and_a_bad_one_stops_the_cli(tmp_path, capsys):
    assert load_settings().analysis_spec == REPO_ROOT / "inference_service/promotion/analysis.yaml"
    bad = tmp_path / "bad.yaml"
    bad.write_text("interval: 5s\nthreshold: 200\nstepWeight: 20\nmaxWeight: 60\nmetrics: []\n")
    from helper.settings import get_settings

    best = tmp_path / "best.env"
    best.write_text("MODEL_NAME=m\nMODEL_VERSION=2\nSTORAGE_URI=/nowhere\n")
    env = {"MLP_STATE_DIR": str(tmp_path / "state"), "MLP_ANALYSIS_SPEC": str(bad)}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        get_settings.cache_clear()
        try:
            code = cli.main(["promote", "--best-run", str(best)])
        finally:
            get_settings.cache_clear()
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1, err
    assert "threshold: Input should be less than or equal to 100" in err
    assert not (tmp_path / "state" / "serving").exists()  # nothing was deployed


# --- progressive steps (fake target and Prometheus) ---------------------------------------------


class FakeTarget:
    scrape_interval_s = 0.0

    def __init__(self):
        self.weights: list[int] = []

    def set_canary_weight(self, percent: int) -> None:
        self.weights.append(percent)


class FakeProm:
    """Answers each check's query from `values[check name](step index)`."""

    def __init__(self, target: FakeTarget, values):
        self.target, self.values, self.queries = target, values, []

    def query(self, promql: str):
        self.queries.append(promql)
        name = next(m.name for m in SPEC.metrics if m.query.split("{")[0] in promql)
        return self.values[name](len(self.target.weights) - 1)


HEALTHY = {
    "request-success-rate": lambda i: 1.0,
    "latency-p99-ratio": lambda i: 1.1,
    "class-distribution-distance": lambda i: 0.02,
}


def steps(values, spec=SPEC):
    target = FakeTarget()
    prom = FakeProm(target, values)
    verdict = run_steps(spec, target, prom, ("champ-rev", "canary-rev"), sleep=lambda s: None)
    return target, prom, verdict


def test_healthy_canary_is_promoted_after_stepping_to_max_weight():
    target, prom, verdict = steps(HEALTHY)
    assert verdict.decision == "promote" and target.weights == [20, 40, 60]
    assert [s.weight for s in verdict.steps] == [20, 40, 60]
    assert all(s.passed for s in verdict.steps)
    assert 'revision="canary-rev"' in prom.queries[0] and "{revision}" not in prom.queries[0]
    assert 'revision="champ-rev"' in prom.queries[1]  # the latency check compares both


@pytest.mark.parametrize("check", sorted(HEALTHY))
def test_a_failing_check_holds_the_weight_and_rolls_back_at_the_threshold(check):
    bad = {
        "request-success-rate": 0.9,
        "latency-p99-ratio": 20.0,
        "class-distribution-distance": 0.3,
    }
    values = HEALTHY | {check: lambda i: bad[check] if i >= 1 else HEALTHY[check](i)}
    target, _, verdict = steps(values)
    assert verdict.decision == "rollback"
    assert target.weights == [20, 40, 40]  # failed steps do not advance
    assert [s.failed_checks for s in verdict.steps] == [0, 1, 2]
    assert [c.name for c in verdict.failed] == [check]


def test_one_failed_step_below_the_threshold_recovers_and_promotes():
    flaky = HEALTHY | {"latency-p99-ratio": lambda i: 9.0 if i == 0 else 1.0}
    target, _, verdict = steps(flaky)
    assert verdict.decision == "promote" and target.weights == [20, 20, 40, 60]


def test_no_data_fails_the_check():
    dead = HEALTHY | {"request-success-rate": lambda i: None}
    _, _, verdict = steps(dead)
    assert verdict.decision == "rollback" and len(verdict.steps) == SPEC.threshold
    assert "no data" in verdict.failed[0].detail


def test_evaluate_renders_every_placeholder_and_names_value_and_bounds():
    target = FakeTarget()
    target.weights.append(20)
    prom = FakeProm(target, HEALTHY)
    values = {"revision": "c", "champion": "h", "interval": "7s", "elapsed": "30s"}
    checks = evaluate(SPEC, prom, values)
    assert all(c.passed for c in checks)
    assert all("{" + p + "}" not in q for q in prom.queries for p in values)
    assert "[7s]" in prom.queries[0] and "[30s]" in prom.queries[2]
    assert checks[0].detail == "request-success-rate = 1, wanted >= 0.99"


def test_request_bodies_follow_the_v2_contract():
    body = v2_body(["a", "b"], [1.5, 2.0])
    assert [i["name"] for i in body["inputs"]] == ["a", "b"]
    assert body["inputs"][1] == {"name": "b", "shape": [1], "datatype": "FP32", "data": [2.0]}


# --- lock ------------------------------------------------------------------------------------


def test_second_lock_is_refused_with_the_holder_named(tmp_path):
    path = tmp_path / "promotion.lock"
    holder = r"in progress \(pid \d+ .*iris v3 -> local"
    with PromotionLock(path, "iris v3 -> local"), pytest.raises(PromotionLocked, match=holder):
        PromotionLock(path, "iris v4").acquire()
    with PromotionLock(path, "iris v4"):  # released: the next one proceeds
        pass


def test_only_one_of_many_concurrent_lockers_proceeds(tmp_path):
    path, won, refused = tmp_path / "l", [], []
    barrier, release = threading.Barrier(4), threading.Event()

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            with PromotionLock(path, str(i)):
                won.append(i)
                release.wait(5)
        except PromotionLocked:
            refused.append(i)
            if len(refused) == 3:
                release.set()

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(refused) == 3


# --- report ----------------------------------------------------------------------------------


def test_report_json_markdown_and_step_summary(tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    rep = PromotionReport(
        "iris",
        "4",
        "local",
        outcome="rolled_back",
        reason="canary agrees on 40/100 rows",
        champion_before="3",
        champion_after="3",
    )
    _, _, verdict = steps(HEALTHY | {"latency-p99-ratio": lambda i: 20.0})
    rep.steps = [step.as_dict() for step in verdict.steps]
    rep.analysis = verdict.steps[-1].checks
    rep.revisions = {"champion": "iris-v3", "canary": "iris-v4"}
    rep.load = {"sent": 600, "failed": 0}
    path = write_report(rep, tmp_path / "reports")
    data = json.loads(path.read_text())
    assert data["outcome"] == "rolled_back" and [s["weight"] for s in data["steps"]] == [20, 20]
    assert json.loads((tmp_path / "reports" / "last.json").read_text()) == data
    text = summary.read_text()
    assert "**rolled_back**" in text and "canary iris-v4 vs champion iris-v3" in text
    assert "| 2 | 20 % | latency-p99-ratio | 20 | <= 3 | FAIL |" in text
    assert "| 1 | 20 % | request-success-rate | 1 | >= 0.99 | pass |" in text
    assert "600 held-out requests through the endpoint, 0 failed" in text
    assert rep.exit_code == 3


# --- KServe target (in-memory API) ---------------------------------------------------------------


class FakeCustomObjects:
    """Applies merge patches to one stored object and reports it Ready at the spec's split,
    with Knative revision names: a new storageUri makes a new revision."""

    def __init__(self, obj: dict | None):
        self.obj = obj
        self.revision = 1
        self.previous = None
        self.patches: list[dict] = []

    def get_namespaced_custom_object(self, group, version, ns, plural, name):
        from kubernetes.client.exceptions import ApiException

        if self.obj is None:
            raise ApiException(status=404)
        return self.obj

    def patch_namespaced_custom_object(self, group, version, ns, plural, name, body):
        self.patches.append(body)
        old_uri = self.obj["spec"]["predictor"]["model"]["storageUri"]
        self.obj = merge_patch(self.obj, body)
        pred = self.obj["spec"]["predictor"]
        if pred["model"]["storageUri"] != old_uri:
            self.previous, self.revision = self.revision, self.revision + 1
        percent = pred.get("canaryTrafficPercent")
        percent = 100 if percent is None else percent
        rev = "iris-classifier-predictor-{:05d}".format
        traffic = [{"revisionName": rev(self.revision), "latestRevision": True, "percent": percent}]
        if self.previous is not None and percent < 100:
            traffic.append(
                {
                    "revisionName": rev(self.previous),
                    "latestRevision": False,
                    "percent": 100 - percent,
                }
            )
        self.obj["status"] = {
            "url": "http://isvc",
            "conditions": [{"type": "Ready", "status": "True"}],
            "components": {"predictor": {"traffic": traffic}},
        }
        return self.obj


BASE = {
    "metadata": {"name": "iris-classifier"},
    "spec": {"predictor": {"model": {"storageUri": "s3://b/old"}}},
}


def test_kserve_target_steps_canary_promote_and_rollback():
    api = FakeCustomObjects(BASE)
    target = KServeTarget(load_settings(promote_ready_timeout_s=1), api=api, poll_s=0.01)
    assert target.prometheus_url == load_settings().cluster_prometheus_url
    assert target.load_url() is None  # the cluster's analysis judges real users' traffic
    first = ModelRef("iris", "3", "s3://b/3")
    target.deploy_first(first)
    assert target.deployed().champion == "3" and target.deployed().canary is None
    target.deploy_canary(ModelRef("iris", "4", "s3://b/4"), 20, timeout_s=1)
    dep = target.deployed()
    assert (dep.champion, dep.canary, dep.canary_percent) == ("3", "4", 20)
    assert target.revisions() == (
        "iris-classifier-predictor-00002",
        "iris-classifier-predictor-00003",
    )
    for w in (40, 60):
        target.set_canary_weight(w)
        assert target.deployed().canary_percent == w
    assert api.patches[-1] == {"spec": {"predictor": {"canaryTrafficPercent": 60}}}  # no new rev
    assert target.revisions()[1] == "iris-classifier-predictor-00003"
    target.rollback()
    dep = target.deployed()
    assert (dep.champion, dep.canary_percent) == ("3", 0)
    assert api.obj["spec"]["predictor"]["canaryTrafficPercent"] == 0
    target.deploy_canary(ModelRef("iris", "5", "s3://b/5"), 20, timeout_s=1)
    target.promote(ModelRef("iris", "5", "s3://b/5"))
    assert target.deployed().champion == "5" and target.deployed().canary is None
    assert api.obj["spec"]["predictor"]["model"]["storageUri"] == "s3://b/5"


def test_kserve_target_reports_nothing_deployed_and_times_out():
    assert KServeTarget(load_settings(), api=FakeCustomObjects(None)).deployed() is None
    never = {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    assert not ready_at(never, 10)
    with pytest.raises(PromotionError, match="previous \\+ latest revision"):
        traffic_revisions({"status": {"url": "http://x"}})


def test_kserve_target_waits_a_bounded_time_and_does_not_retry_api_errors():
    from kubernetes.client.exceptions import ApiException

    from helper.processes import ServiceError

    api = FakeCustomObjects(BASE)
    reads = []
    target = KServeTarget(load_settings(), api=api, poll_s=0.01)
    with pytest.raises(ServiceError, match="iris-classifier not ready in 0s"):
        target._wait(lambda isvc: reads.append(1) and False, timeout_s=0.05)
    assert len(reads) >= 2  # polled until the deadline, then gave up
    assert target._wait(lambda isvc: True, timeout_s=0.05) is BASE
    gone = KServeTarget(load_settings(), api=FakeCustomObjects(None), poll_s=0.01)
    with pytest.raises(ApiException):  # a 404 while waiting is an answer, not "not yet"
        gone._wait(lambda isvc: True, timeout_s=5)


def test_the_local_smoke_request_reports_a_refused_connection_as_a_failed_gate():
    import socket

    from inference_service.promotion.targets.local import _timed_post

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ok, ms, detail = _timed_post(f"http://127.0.0.1:{port}/v2/models/m/infer", {}, 2.0)
    assert not ok and ms >= 0 and detail


# --- CLI ---------------------------------------------------------------------------------------


def test_cli_rejects_an_unknown_target(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.parse(["promote", "--target", "moon"])
    assert exc.value.code == 2 and "moon" in capsys.readouterr().err


def test_cli_reports_a_missing_best_run_file_and_exits_1(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLP_STATE_DIR", str(tmp_path / "state"))
    from helper.settings import get_settings

    get_settings.cache_clear()
    try:
        code = cli.main(["promote", "--best-run", str(tmp_path / "missing.env")])
    finally:
        get_settings.cache_clear()
    assert code == 1 and "missing.env not found" in capsys.readouterr().err
