"""Promotion logic without processes or network: gates, analysis decision, traffic
accounting, lock, report, KServe target against an in-memory API."""

from __future__ import annotations

import json
import threading

import pytest

from helper.settings import load_settings
from inference_service.promotion import cli
from inference_service.promotion.analysis import (
    Reply,
    RevisionStats,
    Thresholds,
    Window,
    decide,
    run_window,
    v2_body,
    window_bodies,
)
from inference_service.promotion.gates import (
    check_metric,
    check_registry,
    check_signature,
    check_smoke,
)
from inference_service.promotion.lock import PromotionLock, PromotionLocked
from inference_service.promotion.registry import ModelRef, PromotionError
from inference_service.promotion.report import PromotionReport, write_report
from inference_service.promotion.targets import (
    KServeTarget,
    merge_patch,
    ready_at,
    tag_urls,
)

SIG = [("a", "double"), ("b", "double")]
T = Thresholds(max_error_rate=0.01, max_p95_ratio=3.0, max_p95_ms=250.0, min_agreement=0.9)


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


# --- analysis ------------------------------------------------------------------------------


def stats(n: int, errors: int = 0, ms: float = 5.0) -> RevisionStats:
    return RevisionStats(requests=n, errors=errors, latencies_ms=[ms] * (n - errors))


def window(canary: RevisionStats, agreed: int = 100, lost: int = 0) -> Window:
    return Window(
        champion=stats(100),
        canary=canary,
        compared=100,
        agreed=agreed,
        endpoint_requests=100,
        endpoint_answered=100 - lost,
    )


def failing(checks) -> set[str]:
    return {c.name for c in checks if not c.passed}


def test_healthy_canary_passes_every_check():
    assert failing(decide(window(stats(100)), T)) == set()


@pytest.mark.parametrize(
    ("win", "expected"),
    [
        (window(stats(100, errors=5)), {"error_rate"}),
        (window(stats(100, ms=40.0)), {"p95_latency"}),  # 8x the champion
        (window(stats(100), agreed=40), {"agreement"}),
        (window(stats(100), lost=1), {"endpoint"}),
        (window(stats(100, errors=100)), {"error_rate", "p95_latency"}),
    ],
)
def test_each_threshold_can_fail_on_its_own(win, expected):
    assert failing(decide(win, T)) == expected


def test_p95_ceiling_applies_even_when_the_champion_is_slow():
    slow = Window(
        champion=stats(100, ms=200.0),
        canary=stats(100, ms=300.0),
        compared=1,
        agreed=1,
        endpoint_requests=1,
        endpoint_answered=1,
    )
    check = next(c for c in decide(slow, T) if c.name == "p95_latency")
    assert not check.passed and check.numbers["limit_ms"] == 250.0


class FakeRevisions:
    """A sender standing in for HTTP: the canary disagrees on odd rows and fails every 10th
    request; the endpoint routes every 5th request to the canary."""

    def __init__(self):
        self.n = {"endpoint": 0, "champion": 0, "canary": 0}

    def __call__(self, base: str, body: dict) -> Reply:
        self.n[base] += 1
        row = int(body["inputs"][0]["data"][0])
        if base == "canary":
            if self.n[base] % 10 == 0:
                return Reply(503, 1.0)
            return Reply(200, 2.0, row % 2, "2")
        if base == "endpoint":
            return Reply(200, 1.0, 0, "2" if self.n[base] % 5 == 0 else "1")
        return Reply(200, 1.0, 0, "1")


def test_run_window_counts_per_revision_and_agreement():
    bodies = window_bodies(["a"], [[float(i)] for i in range(4)], size=20)
    w = run_window(FakeRevisions(), "endpoint", "champion", "canary", bodies)
    assert w.endpoint_requests == w.endpoint_answered == 20
    assert w.endpoint_by_version == {"1": 16, "2": 4}
    assert (w.canary.requests, w.canary.errors, w.champion.errors) == (20, 2, 0)
    assert w.compared == 18  # rows where the canary failed are not compared
    assert w.agreed == 10  # the 10 even rows agree (row % 2 == 0); both failures hit odd rows
    summary = w.summary()
    assert summary["canary"]["error_rate"] == 0.1 and summary["endpoint"]["lost"] == 0


def test_request_bodies_follow_the_v2_contract():
    body = v2_body(["a", "b"], [1.5, 2.0])
    assert [i["name"] for i in body["inputs"]] == ["a", "b"]
    assert body["inputs"][1] == {"name": "b", "shape": [1], "datatype": "FP32", "data": [2.0]}
    with pytest.raises(ValueError, match="empty"):
        window_bodies(["a"], [], 5)


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
    rep.analysis = decide(window(stats(100), agreed=40), T)
    rep.window = window(stats(100), agreed=40).summary()
    path = write_report(rep, tmp_path / "reports")
    data = json.loads(path.read_text())
    assert data["outcome"] == "rolled_back" and data["window"]["agreement"] == 0.4
    assert json.loads((tmp_path / "reports" / "last.json").read_text()) == data
    text = summary.read_text()
    assert "**rolled_back**" in text and "| agreement | FAIL |" in text and "40/100" in text
    assert rep.exit_code == 3


# --- KServe target (in-memory API) ---------------------------------------------------------------


class FakeCustomObjects:
    """Applies merge patches to one stored object and reports it Ready at the spec's split."""

    def __init__(self, obj: dict | None):
        self.obj = obj

    def get_namespaced_custom_object(self, group, version, ns, plural, name):
        from kubernetes.client.exceptions import ApiException

        if self.obj is None:
            raise ApiException(status=404)
        return self.obj

    def patch_namespaced_custom_object(self, group, version, ns, plural, name, body):
        percent = body["spec"]["predictor"].get("canaryTrafficPercent")
        percent = 100 if percent is None else percent
        self.obj = merge_patch(self.obj, body)
        self.obj["status"] = {
            "url": "http://isvc",
            "conditions": [{"type": "Ready", "status": "True"}],
            "components": {
                "predictor": {
                    "traffic": [
                        {
                            "tag": "latest",
                            "latestRevision": True,
                            "percent": percent or 0,
                            "url": "http://latest-isvc",
                        },
                        {
                            "tag": "prev",
                            "latestRevision": False,
                            "percent": 100 - (percent or 0),
                            "url": "http://prev-isvc",
                        },
                    ]
                }
            },
        }
        return self.obj


BASE = {
    "metadata": {"name": "iris-classifier"},
    "spec": {"predictor": {"model": {"storageUri": "s3://b/old"}}},
}


def test_kserve_target_canary_promote_and_rollback():
    api = FakeCustomObjects(BASE)
    target = KServeTarget(load_settings(promote_ready_timeout_s=1), api=api, poll_s=0.01)
    first = ModelRef("iris", "3", "s3://b/3")
    target.deploy_first(first)
    assert target.deployed().champion == "3" and target.deployed().canary is None
    target.deploy_canary(ModelRef("iris", "4", "s3://b/4"), 10, timeout_s=1)
    dep = target.deployed()
    assert (dep.champion, dep.canary, dep.canary_percent) == ("3", "4", 10)
    assert api.obj["metadata"]["annotations"]["serving.kserve.io/enable-tag-routing"] == "true"
    urls = target.endpoints()
    assert (urls.champion, urls.canary) == ("http://prev-isvc", "http://latest-isvc")
    target.rollback()
    dep = target.deployed()
    assert (dep.champion, dep.canary_percent) == ("3", 0)
    assert api.obj["spec"]["predictor"]["canaryTrafficPercent"] == 0
    target.deploy_canary(ModelRef("iris", "5", "s3://b/5"), 10, timeout_s=1)
    target.promote(ModelRef("iris", "5", "s3://b/5"))
    assert target.deployed().champion == "5" and target.deployed().canary is None
    assert api.obj["spec"]["predictor"]["model"]["storageUri"] == "s3://b/5"


def test_kserve_target_reports_nothing_deployed_and_times_out():
    assert KServeTarget(load_settings(), api=FakeCustomObjects(None)).deployed() is None
    never = {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    assert not ready_at(never, 10)
    with pytest.raises(PromotionError, match="prev/latest"):
        tag_urls({"status": {"url": "http://x"}})


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
