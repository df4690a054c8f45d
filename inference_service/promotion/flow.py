"""The promotion itself: gates -> canary -> progressive analysis -> promote or roll back.

Ordered so that every failure leaves production as it was: the analysis spec is parsed
and Prometheus asked to check its queries before anything gets traffic, nothing gets
traffic before all gates pass, the MLflow alias moves only after the target serves the
new version at 100 %, and a rollback touches neither the champion revision nor the alias.
"""

from __future__ import annotations

import time
from pathlib import Path

from helper.processes import ServiceError
from helper.settings import Settings
from inference_service.promotion import registry
from inference_service.promotion.analysis import (
    ReplayLoad,
    run_steps,
    v2_body,
    validate_queries,
    wait_observed,
)
from inference_service.promotion.gates import (
    Check,
    check_metric,
    check_registry,
    check_signature,
    check_smoke,
)
from inference_service.promotion.lock import PromotionLock
from inference_service.promotion.prom import Prometheus, PrometheusUnavailable
from inference_service.promotion.registry import ModelRef, PromotionError
from inference_service.promotion.report import PromotionReport, write_report
from inference_service.promotion.spec import AnalysisSpec, load_spec
from inference_service.promotion.targets import Target
from inference_service.state import StateError

# A Prometheus just started by `prepare()` replays its WAL and staggers first scrapes; on a
# loaded 2-core machine five 1 s intervals were not enough (CI run of stop 18). The wait
# ends as soon as every queried metric is known, so only a truly unknown metric pays it.
SETTLE_FLOOR_S = 30.0


def auth_headers(settings: Settings) -> dict[str, str]:
    """The bearer token the endpoint requires, when one is configured (never logged)."""
    token = settings.auth_token
    return {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}


def report_dir(settings: Settings) -> Path:
    return settings.state_dir / "promotion"


def lock_for(settings: Settings, what: str) -> PromotionLock:
    return PromotionLock(report_dir(settings) / "promotion.lock", what)


def candidate_from(best_run_file: Path, version: str | None = None) -> ModelRef:
    """The model named by `.env.best_run` (or `version` of the same model, for dispatch)."""
    from helper.best_run import BestRunError, read_best_run

    try:
        best = read_best_run(best_run_file)
    except (StateError, BestRunError) as exc:
        raise PromotionError(str(exc)) from None
    if version and version != best["MODEL_VERSION"]:
        return ModelRef(best["MODEL_NAME"], version, "")  # storage URI from the registry
    return ModelRef(
        best["MODEL_NAME"], best["MODEL_VERSION"], best["STORAGE_URI"], best.get("RUN_ID")
    )


def promote(
    settings: Settings, target: Target, ref: ModelRef, gates_only: bool = False
) -> PromotionReport:
    """Run the whole promotion under the lock; returns (and writes) a report for every
    decision. `gates_only` stops after the gates (CI's first job, before the approval).
    A malformed analysis spec or an unreachable Prometheus raise PromotionError before
    anything is deployed."""
    spec = load_spec(settings.analysis_spec)  # a malformed spec stops here, nothing touched
    with lock_for(settings, f"{ref.name} v{ref.version} -> {target.name}"):
        start = time.monotonic()
        report = PromotionReport(ref.name, ref.version, target.name)
        try:
            _promote(settings, target, ref, report, gates_only, spec)
        finally:
            report.seconds = time.monotonic() - start
            if report.outcome != "pending":
                write_report(report, report_dir(settings))
        return report


def _promote(
    settings: Settings,
    target: Target,
    ref: ModelRef,
    report: PromotionReport,
    gates_only: bool,
    spec: AnalysisSpec,
) -> None:
    client = registry.client(settings)
    current = target.deployed()
    champ = registry.champion(client, ref.name, settings)
    report.champion_before = current.champion if current else None
    report.champion_after = report.champion_before
    if current and current.champion == ref.version:
        if champ is None or champ.version != ref.version:
            registry.move_champion(client, ref)
            report.notes.append(f"alias champion was on {champ and champ.version}: moved")
        _finish(report, "noop", f"version {ref.version} is already the champion; nothing to do")
        return
    if current and current.canary == ref.version and current.canary_percent == 0:
        _finish(
            report,
            "rolled_back",
            f"version {ref.version} was already rolled back; "
            "register a new version (nothing changed)",
        )
        return

    # 0. Prometheus must answer and accept every query before anything else moves -------
    prom = None
    if current is not None and not gates_only:
        target.prepare()
        prom = Prometheus(target.prometheus_url)
        prom.ready()
        validate_queries(spec, prom, settle_s=max(5 * target.scrape_interval_s, SETTLE_FLOOR_S))

    # 1. gates -------------------------------------------------------------------------
    ref = _resolve_storage(client, ref, settings)
    features, x, y, n_classes = registry.held_out(settings)
    report.gates = _gates(settings, target, client, ref, champ, (features, x, y, n_classes))
    if champ is None:
        report.notes.append("no champion yet: comparative gates passed trivially")
    failed = [g for g in report.gates if not g.passed]
    if failed:
        _finish(
            report,
            "gates_failed",
            "stopped at the gates, nothing deployed: " + "; ".join(g.detail for g in failed),
        )
        return
    if gates_only:
        target.discard_warm()
        _finish(report, "gates_passed", "all gates passed; nothing deployed (gates only)")
        return

    # first model ever: straight to champion ---------------------------------------------
    if current is None:
        target.deploy_first(ref)
        registry.move_champion(client, ref)
        report.champion_after = ref.version
        report.notes.append("first deployment: no champion to compare, deployed as champion")
        _finish(report, "first_deploy", f"version {ref.version} deployed as the first champion")
        return

    # 2. canary at the first step ----------------------------------------------------------
    report.canary_percent = spec.step_weight
    try:
        target.deploy_canary(ref, spec.step_weight, settings.promote_ready_timeout_s)
        revisions = target.revisions()
        wait_observed(prom, revisions[1], settings.promote_ready_timeout_s)
    except (ServiceError, PromotionError, StateError) as exc:
        _safe_rollback(target, report)
        _finish(report, "rolled_back", f"canary did not become ready: {exc}")
        return
    report.revisions = {"champion": revisions[0], "canary": revisions[1]}

    # 3. progressive analysis on Prometheus ---------------------------------------------
    load = _load_step(settings, target, spec, features, x)
    try:
        verdict = run_steps(
            spec,
            target,
            prom,
            revisions,
            load=load,
            on_step=lambda step: report.steps.append(step.as_dict()),
        )
    except (PrometheusUnavailable, ServiceError, StateError) as exc:
        _safe_rollback(target, report)
        _finish(report, "rolled_back", f"analysis interrupted, canary rolled back: {exc}")
        return
    finally:
        if load is not None:
            report.load = dict(load.total)
    report.analysis = verdict.steps[-1].checks

    # 4. decision ------------------------------------------------------------------------
    if verdict.decision != "promote":
        failed = "; ".join(c.detail for c in verdict.failed)
        _safe_rollback(target, report)
        _finish(
            report,
            "rolled_back",
            f"canary rolled back after {verdict.steps[-1].failed_checks} failed check(s) "
            f"(threshold {spec.threshold}), champion untouched: {failed}",
        )
        return
    target.promote(ref)
    registry.move_champion(client, ref)
    report.champion_after = ref.version
    report.canary_percent = 100
    weights = " -> ".join(f"{s.weight} %" for s in verdict.steps)
    _finish(
        report,
        "promoted",
        f"version {ref.version} promoted to 100 % and alias champion after {weights}",
    )


def _load_step(settings, target, spec: AnalysisSpec, features, x) -> ReplayLoad | None:
    """The held-out split replayed through the endpoint, where the target wants one."""
    url = target.load_url()
    if spec.load is None or url is None:
        return None
    return ReplayLoad(
        url,
        [v2_body(features, row) for row in x],
        rps=spec.load.rps,
        concurrency=spec.load.concurrency,
        headers=auth_headers(settings),
        seed=settings.seed,
    )


def _finish(report: PromotionReport, outcome: str, reason: str) -> None:
    report.outcome, report.reason = outcome, reason


def _safe_rollback(target: Target, report: PromotionReport) -> None:
    try:
        target.rollback()
    except (ServiceError, PromotionError) as exc:
        report.notes.append(f"rollback: {exc}")
    report.canary_percent = 0


def _resolve_storage(client, ref: ModelRef, settings: Settings) -> ModelRef:
    """A dispatch by version has no URI yet: ask the registry (as register.py does)."""
    if ref.storage_uri or not registry.version_exists(client, ref.name, ref.version):
        return ref
    from ml_platform.artifacts import resolve_storage_uri

    uri = resolve_storage_uri(
        client.get_model_version_download_uri(ref.name, ref.version), settings.artifacts_destination
    )
    mv = client.get_model_version(ref.name, ref.version)
    return ModelRef(ref.name, ref.version, uri, mv.run_id)


def _gates(settings, target, client, ref, champ, data) -> list[Check]:
    """Registry, signature, held-out metric, smoke load - in that order, stopping at the
    first failure (later gates need what the earlier ones established)."""
    from inference_service.model_loader import ModelLoadError, fetch_model

    features, x, y, n_classes = data
    checks = [
        check_registry(
            ref.name, ref.version, registry.version_exists(client, ref.name, ref.version)
        )
    ]
    if not checks[-1].passed:
        return checks
    try:
        cand_dir = fetch_model(ref.storage_uri, settings)
        champ_dir = fetch_model(champ.storage_uri, settings) if champ else None
    except ModelLoadError as exc:
        return [*checks, Check("artifacts", False, str(exc))]
    checks.append(
        check_signature(
            registry.signature_inputs(cand_dir),
            registry.signature_inputs(champ_dir) if champ_dir else None,
        )
    )
    if not checks[-1].passed:
        return checks
    metric = settings.metric
    try:
        cand_score = registry.score(cand_dir, features, x, y, n_classes)[metric.value]
        champ_score = (
            registry.score(champ_dir, features, x, y, n_classes)[metric.value]
            if champ_dir
            else None
        )
    except (ModelLoadError, PromotionError, ValueError) as exc:
        return [*checks, Check("metric", False, f"cannot score on the held-out set: {exc}")]
    checks.append(
        check_metric(
            metric.value,
            metric.mode,
            cand_score,
            champ_score,
            settings.min_metric,
            settings.promote_max_regression,
        )
    )
    if not checks[-1].passed:
        return checks
    ok, ms, detail = target.smoke(ref, v2_body(features, x[0]))
    checks.append(check_smoke(ok, ms, settings.promote_smoke_budget_ms, detail))
    return checks


def rollback(settings: Settings, target: Target) -> PromotionReport:
    """Manual rollback (`task rollback`): the canary to 0 %, champion and alias untouched."""
    with lock_for(settings, f"manual rollback on {target.name}"):
        current = target.deployed()
        if current is None or current.canary is None or current.canary_percent == 0:
            raise PromotionError("no canary with traffic to roll back; the champion serves 100 %")
        report = PromotionReport(
            settings.registered_model_name,
            current.canary,
            target.name,
            champion_before=current.champion,
            champion_after=current.champion,
        )
        target.rollback()
        report.canary_percent = 0
        _finish(report, "rolled_back", f"manual rollback of canary {current.canary}")
        write_report(report, report_dir(settings))
        return report
