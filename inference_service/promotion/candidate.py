"""The candidate's way through the gates: the model fetched, compared and smoke-loaded.

`gates.py` stays pure (numbers in, verdict out); this is the part that touches the registry,
the object store and the target, in the order the flow needs: each gate relies on what the
ones before it established, so the first failure ends the list.
"""

from __future__ import annotations

from helper.settings import Settings
from inference_service.promotion import registry
from inference_service.promotion.analysis import v2_body
from inference_service.promotion.gates import (
    Check,
    check_metric,
    check_registry,
    check_signature,
    check_smoke,
)
from inference_service.promotion.registry import ModelRef, PromotionError


def resolve_storage(client, ref: ModelRef, settings: Settings) -> ModelRef:
    """A dispatch by version has no URI yet: ask the registry (as register.py does)."""
    if ref.storage_uri or not registry.version_exists(client, ref.name, ref.version):
        return ref
    from ml_platform.artifacts import resolve_storage_uri

    uri = resolve_storage_uri(
        client.get_model_version_download_uri(ref.name, ref.version), settings.artifacts_destination
    )
    mv = client.get_model_version(ref.name, ref.version)
    return ModelRef(ref.name, ref.version, uri, mv.run_id)


def run_gates(settings, target, client, ref, champ, data) -> list[Check]:
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
