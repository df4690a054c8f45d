"""The promotion itself: gates -> canary -> progressive analysis -> promote or roll back.

Ordered so that every failure leaves production as it was: the analysis spec is parsed
and Prometheus asked to check its queries before anything gets traffic, nothing gets
traffic before all gates pass, the MLflow alias moves only after the target serves the
new version at 100 %, and a rollback touches neither the champion revision nor the alias.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from helper.processes import ServiceError
from helper.settings import Settings
from inference_service.promotion import registry
from inference_service.promotion.analysis import (
    ReplayLoad,
    Verdict,
    run_steps,
    v2_body,
    validate_queries,
    wait_observed,
)
from inference_service.promotion.candidate import resolve_storage, run_gates
from inference_service.promotion.lock import PromotionLock
from inference_service.promotion.prom import Prometheus, PrometheusUnavailable
from inference_service.promotion.registry import ModelRef, PromotionError
from inference_service.promotion.report import PromotionReport, write_report
from inference_service.promotion.spec import AnalysisSpec, load_spec
from inference_service.promotion.targets import Deployed, Target
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


@dataclass
class _Run:
    """What every phase of one promotion works with."""

    settings: Settings
    target: Target
    spec: AnalysisSpec
    report: PromotionReport
    client: object  # the MLflow client


def _promote(
    settings: Settings,
    target: Target,
    ref: ModelRef,
    report: PromotionReport,
    gates_only: bool,
    spec: AnalysisSpec,
) -> None:
    """The phases in order; a phase that decides the outcome ends the promotion."""
    run = _Run(settings, target, spec, report, registry.client(settings))
    current = target.deployed()
    champ = registry.champion(run.client, ref.name, settings)
    report.champion_before = current.champion if current else None
    report.champion_after = report.champion_before
    if _settled(run, ref, current, champ):
        return
    # Prometheus must answer and accept every query before anything else moves
    prom = _preflight(run) if current is not None and not gates_only else None
    ref = resolve_storage(run.client, ref, settings)
    data = registry.held_out(settings)
    if not _gates_pass(run, ref, champ, data, gates_only):
        return
    if current is None:
        _first_deploy(run, ref)
        return
    revisions = _start_canary(run, ref, prom)
    if revisions is None:
        return
    verdict = _analyse(run, prom, revisions, data)
    if verdict is not None:
        _decide(run, ref, verdict)


def _settled(run: _Run, ref: ModelRef, current: Deployed | None, champ) -> bool:
    """Nothing to do: the version already serves as champion, or was rolled back once."""
    if current and current.champion == ref.version:
        if champ is None or champ.version != ref.version:
            registry.move_champion(run.client, ref)
            run.report.notes.append(f"alias champion was on {champ and champ.version}: moved")
        _finish(run.report, "noop", f"version {ref.version} is already the champion; nothing to do")
        return True
    if current and current.canary == ref.version and current.canary_percent == 0:
        _finish(
            run.report,
            "rolled_back",
            f"version {ref.version} was already rolled back; "
            "register a new version (nothing changed)",
        )
        return True
    return False


def _preflight(run: _Run) -> Prometheus:
    """The serving side up, Prometheus answering, every query of the spec accepted."""
    target = run.target
    target.prepare()
    prom = Prometheus(target.prometheus_url)
    prom.ready()
    validate_queries(run.spec, prom, settle_s=max(5 * target.scrape_interval_s, SETTLE_FLOOR_S))
    return prom


def _gates_pass(run: _Run, ref: ModelRef, champ, data, gates_only: bool) -> bool:
    """Every gate in order; False once the outcome is decided (a failure, or gates only)."""
    report = run.report
    report.gates = run_gates(run.settings, run.target, run.client, ref, champ, data)
    if champ is None:
        report.notes.append("no champion yet: comparative gates passed trivially")
    failed = [g for g in report.gates if not g.passed]
    if failed:
        _finish(
            report,
            "gates_failed",
            "stopped at the gates, nothing deployed: " + "; ".join(g.detail for g in failed),
        )
        return False
    if gates_only:
        run.target.discard_warm()
        _finish(report, "gates_passed", "all gates passed; nothing deployed (gates only)")
        return False
    return True


def _first_deploy(run: _Run, ref: ModelRef) -> None:
    """First model ever: straight to champion, nothing to compare it with."""
    run.target.deploy_first(ref)
    registry.move_champion(run.client, ref)
    run.report.champion_after = ref.version
    run.report.notes.append("first deployment: no champion to compare, deployed as champion")
    _finish(run.report, "first_deploy", f"version {ref.version} deployed as the first champion")


def _start_canary(run: _Run, ref: ModelRef, prom: Prometheus) -> tuple[str, str] | None:
    """The canary at the first step, seen by Prometheus; None once it was rolled back."""
    report, target = run.report, run.target
    report.canary_percent = run.spec.step_weight
    timeout = run.settings.promote_ready_timeout_s
    try:
        target.deploy_canary(ref, run.spec.step_weight, timeout)
        revisions = target.revisions()
        wait_observed(prom, revisions[1], timeout)
    except (ServiceError, PromotionError, StateError) as exc:
        _safe_rollback(target, report)
        _finish(report, "rolled_back", f"canary did not become ready: {exc}")
        return None
    report.revisions = {"champion": revisions[0], "canary": revisions[1]}
    return revisions


def _analyse(run: _Run, prom: Prometheus, revisions: tuple[str, str], data) -> Verdict | None:
    """The progressive analysis on Prometheus; None once an interruption rolled back."""
    report = run.report
    features, x = data[0], data[1]
    load = _load_step(run.settings, run.target, run.spec, features, x)
    try:
        verdict = run_steps(
            run.spec,
            run.target,
            prom,
            revisions,
            load=load,
            on_step=lambda step: report.steps.append(step.as_dict()),
        )
    except (PrometheusUnavailable, ServiceError, StateError) as exc:
        _safe_rollback(run.target, report)
        _finish(report, "rolled_back", f"analysis interrupted, canary rolled back: {exc}")
        return None
    finally:
        if load is not None:
            report.load = dict(load.total)
    report.analysis = verdict.steps[-1].checks
    return verdict


def _decide(run: _Run, ref: ModelRef, verdict: Verdict) -> None:
    """Pass at maxWeight: 100 % and the alias moved; otherwise roll back, champion untouched."""
    report = run.report
    if verdict.decision != "promote":
        failed = "; ".join(c.detail for c in verdict.failed)
        _safe_rollback(run.target, report)
        _finish(
            report,
            "rolled_back",
            f"canary rolled back after {verdict.steps[-1].failed_checks} failed check(s) "
            f"(threshold {run.spec.threshold}), champion untouched: {failed}",
        )
        return
    run.target.promote(ref)
    registry.move_champion(run.client, ref)
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
