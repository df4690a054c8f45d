"""Where a promotion acts: the local canary (`local.py`: HAProxy + two predictor slots) or
KServe (`kserve.py`).

Both implement `Target`, defined here with what they report (`Deployed`) and the factory the
CLI calls. The flow never knows which one it drives, so the logic the local integration
tests exercise is the logic CI runs against the cluster: set a canary share, name the two
revisions for the analysis' queries, promote or roll back. Each implementation lives in its
own module so that neither pulls in the other's dependencies (the kubernetes client, the
local serving stack).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from helper.settings import Settings
from inference_service.promotion.registry import ModelRef, PromotionError


@dataclass(frozen=True)
class Deployed:
    """What the target serves now; `canary_percent == 0` with a canary = rolled back."""

    champion: str | None
    canary: str | None = None
    canary_percent: int = 0


class Target(Protocol):
    name: str
    served_name: str  # the model name in /v2/models/<name>/infer
    prometheus_url: str  # where the analysis reads the revisions' metrics
    scrape_interval_s: float

    def deployed(self) -> Deployed | None: ...
    def smoke(self, ref: ModelRef, body: dict) -> tuple[bool, float | None, str]: ...
    def prepare(self) -> None: ...
    def deploy_first(self, ref: ModelRef) -> None: ...
    def deploy_canary(self, ref: ModelRef, percent: int, timeout_s: float) -> None: ...
    def set_canary_weight(self, percent: int) -> None: ...
    def revisions(self) -> tuple[str, str]: ...
    def load_url(self) -> str | None: ...
    def promote(self, ref: ModelRef) -> None: ...
    def rollback(self) -> None: ...
    def discard_warm(self) -> None: ...


def make_target(kind: str, settings: Settings) -> Target:
    if kind == "local":
        from inference_service.promotion.targets.local import LocalTarget

        return LocalTarget(settings)
    if kind == "kserve":
        from inference_service.promotion.targets.kserve import KServeTarget

        return KServeTarget(settings)
    raise PromotionError(f"target: '{kind}' is not one of local, kserve")
