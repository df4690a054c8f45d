"""How much search a tuning session may spend: the settings' `tune_*` values, shrunk for
`--smoke`, overridden by CLI flags, and checked against the settings' own bounds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from helper.settings import Settings


@dataclass(frozen=True)
class TuneBudget:
    """How much search a session may spend."""

    num_samples: int
    max_concurrent: int
    time_budget_s: float
    cpus: int
    max_rounds: int

    def __post_init__(self) -> None:
        """The bounds are the settings' own (`tune_<field>` in helper/settings.py): one
        definition, the same message for `MLP_TUNE_*` and for a CLI flag."""
        from pydantic import TypeAdapter, ValidationError

        for name in self.__dataclass_fields__:
            spec = Settings.model_fields[f"tune_{name}"]
            value = getattr(self, name)
            try:
                TypeAdapter(Annotated[spec.annotation, *spec.metadata]).validate_python(value)
            except ValidationError as exc:
                reason = exc.errors()[0]["msg"]
                raise ValueError(f"{name}: {reason}, got {value!r}") from None


# Enough to prove the whole path (search, scheduler, parent/child runs, model logging).
SMOKE_BUDGET = dict(num_samples=2, max_concurrent=2, time_budget_s=120.0, max_rounds=8)


def budget_from_settings(settings: Settings, smoke: bool = False, **overrides) -> TuneBudget:
    """Settings' budget, shrunk for `--smoke`, then any explicit CLI overrides (None = unset)."""
    values = dict(
        num_samples=settings.tune_num_samples,
        max_concurrent=settings.tune_max_concurrent,
        time_budget_s=settings.tune_time_budget_s,
        cpus=settings.tune_cpus,
        max_rounds=settings.tune_max_rounds,
    )
    if smoke:
        values.update(SMOKE_BUDGET)
    values.update({k: v for k, v in overrides.items() if v is not None})
    # one CPU per trial: more concurrent trials than CPUs would only queue
    values["max_concurrent"] = min(values["max_concurrent"], values["cpus"])
    return TuneBudget(**values)
