"""The canary analysis as data: a YAML spec, validated with one clear line per problem.

Same shape as Flagger's `analysis` block: `interval` (time per step), `threshold` (failed
checks before rollback), `stepWeight` / `maxWeight` (canary share per step, in percent),
an optional `load` step for where no user traffic flows, and `metrics`, each a PromQL
template with a `min` and/or `max`. Templates name revisions, never hosts, so one spec
runs against the local Prometheus and the cluster's:

* `{revision}` — the canary revision, `{champion}` — the champion revision (both the
  `revision` label of the predictor's metrics: Knative's revision name in a cluster, the
  local serving stack's `<model>-v<version>` on a laptop);
* `{interval}` — the step's window (interval + scrape delay, at least 4 scrapes), `{elapsed}`
  — the time since the canary first got traffic (for cumulative checks).

Problems with the document itself (unknown key, value out of range, unknown placeholder)
are found by `load_spec`; problems only Prometheus can see (bad PromQL, a metric no target
exports) by `analysis.validate_queries` before the canary gets any traffic.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from inference_service.promotion.registry import PromotionError

PLACEHOLDERS = ("revision", "champion", "interval", "elapsed")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class AnalysisSpecError(PromotionError):
    """The analysis spec is malformed; the message names the field."""


def parse_duration(value) -> float:
    """'500ms', '5s', '1m', '1h' (or a number of seconds) -> seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '5s' or '1m'")
    if isinstance(value, int | float):
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"'{value}' is not a duration such as '5s', '500ms' or '1m'")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


def promql_duration(seconds: float) -> str:
    """Seconds as a PromQL range (whole seconds, rounded up: a window never shrinks)."""
    return f"{max(1, math.ceil(seconds))}s"


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=1.0, le=3600.0)]


class MetricCheck(BaseModel):
    """One PromQL check; it fails when the value is missing ("no data"), below `min` or
    above `max`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    query: str = Field(min_length=1)
    min: float | None = None
    max: float | None = None
    description: str = ""

    @field_validator("query")
    @classmethod
    def _placeholders(cls, v: str) -> str:
        found = set(_PLACEHOLDER.findall(v))
        unknown = sorted(found - set(PLACEHOLDERS))
        if unknown:
            known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            raise ValueError(f"unknown placeholder {{{unknown[0]}}} (known: {known})")
        if "revision" not in found:
            raise ValueError("the query must select the canary with {revision}")
        return v

    @model_validator(mode="after")
    def _bounds(self) -> MetricCheck:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self

    def render(self, values: dict[str, str]) -> str:
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], self.query)

    def judge(self, value: float | None) -> bool:
        if value is None or not math.isfinite(value):
            return False
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    def bounds(self) -> str:
        parts = []
        if self.min is not None:
            parts.append(f">= {self.min:g}")
        if self.max is not None:
            parts.append(f"<= {self.max:g}")
        return " and ".join(parts)


class LoadStep(BaseModel):
    """Replay of the held-out split through the endpoint during each interval (like
    Flagger's load-tester webhook), where no user traffic flows. Bounded: rps x interval."""

    model_config = ConfigDict(extra="forbid")

    rps: float = Field(gt=0, le=2000)
    concurrency: int = Field(4, ge=1, le=64)


class AnalysisSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    interval: Duration
    threshold: int = Field(ge=1, le=100)
    step_weight: int = Field(alias="stepWeight", ge=1, le=100)
    max_weight: int = Field(alias="maxWeight", ge=1, le=100)
    load: LoadStep | None = None
    metrics: list[MetricCheck] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> AnalysisSpec:
        if self.step_weight > self.max_weight:
            raise ValueError(f"stepWeight {self.step_weight} is above maxWeight {self.max_weight}")
        names = [m.name for m in self.metrics]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"metric name '{dupes[0]}' is used twice")
        return self

    @property
    def weights(self) -> list[int]:
        """The canary shares of the steps when every check passes."""
        out, w = [], self.step_weight
        while w < self.max_weight:
            out.append(w)
            w += self.step_weight
        return [*out, self.max_weight]


def _where(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_spec(doc, source: str = "analysis spec") -> AnalysisSpec:
    try:
        return AnalysisSpec.model_validate(doc)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = _where(err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {msg}" if where else msg)
        raise AnalysisSpecError(f"{source} " + "; ".join(problems)) from None


def load_spec(path: str | Path) -> AnalysisSpec:
    """The spec at `path`, or AnalysisSpecError with one line naming the field."""
    source = f"analysis spec {path}:"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise AnalysisSpecError(f"{source} cannot read it ({exc.strerror})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise AnalysisSpecError(f"{source} not valid YAML{where}") from None
    if not isinstance(doc, dict):
        raise AnalysisSpecError(f"{source} expected a mapping with interval, threshold, ...")
    return parse_spec(doc, source)


# Metric names in a query: an identifier directly followed by a label selector `{`.
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{")


def metric_names(query: str) -> set[str]:
    """Metric names the query selects (`name{...}`); the templates always use selectors."""
    return set(_SELECTOR.findall(_PLACEHOLDER.sub("x", query)))
