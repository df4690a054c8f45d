"""The promotion's record: JSON for machines, Markdown for people (job log, step summary).

Every outcome - promoted, rolled back, stopped at the gates, no-op - produces one,
naming the numbers that decided it: each analysis step's canary weight and each metric's
value against its threshold.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from inference_service.promotion.gates import Check

# outcome -> CLI exit code
OUTCOMES = {
    "promoted": 0,
    "first_deploy": 0,
    "noop": 0,
    "gates_passed": 0,
    "rolled_back": 3,
    "gates_failed": 2,
}


@dataclass
class PromotionReport:
    model_name: str
    version: str
    target: str
    outcome: str = "pending"
    reason: str = ""
    champion_before: str | None = None
    champion_after: str | None = None
    canary_percent: int | None = None
    gates: list[Check] = field(default_factory=list)
    analysis: list[Check] = field(default_factory=list)  # the checks of the last step
    revisions: dict | None = None  # {"champion": ..., "canary": ...} as the queries select them
    steps: list[dict] = field(default_factory=list)  # analysis.Step.as_dict() per step
    load: dict | None = None  # the load step's totals (sent / failed), where one ran
    notes: list[str] = field(default_factory=list)
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return OUTCOMES.get(self.outcome, 1)

    def as_dict(self) -> dict:
        return asdict(self)

    def markdown(self) -> str:
        lines = [
            f"## Promotion of {self.model_name} v{self.version} ({self.target}): "
            f"**{self.outcome}**",
            "",
            self.reason,
            "",
            f"- champion before: {self.champion_before or 'none'}; "
            f"after: {self.champion_after or 'none'}",
            f"- wall time: {self.seconds:.1f} s",
        ]
        lines += [f"- note: {n}" for n in self.notes]
        if self.gates:
            lines += ["", "### Gates", "", "| check | result | detail |", "|---|---|---|"]
            lines += [
                f"| {c.name} | {'pass' if c.passed else 'FAIL'} | {c.detail} |" for c in self.gates
            ]
        if self.steps:
            revs = self.revisions or {}
            lines += [
                "",
                f"### Analysis (canary {revs.get('canary', '?')} vs champion "
                f"{revs.get('champion', '?')})",
                "",
                "| step | canary weight | check | value | threshold | result |",
                "|---|---|---|---|---|---|",
            ]
            for i, step in enumerate(self.steps, 1):
                for c in step["checks"]:
                    n = c["numbers"]
                    value = "no data" if n.get("value") is None else f"{n['value']:.4g}"
                    bounds = " and ".join(
                        f"{op} {n[k]:g}"
                        for op, k in ((">=", "min"), ("<=", "max"))
                        if n.get(k) is not None
                    )
                    verdict = "pass" if c["passed"] else "FAIL"
                    lines.append(
                        f"| {i} | {step['weight']} % | {c['name']} | {value} | {bounds} | "
                        f"{verdict} |"
                    )
        if self.load:
            lines += [
                "",
                f"- load step: {self.load.get('sent', 0)} held-out requests through the "
                f"endpoint, {self.load.get('failed', 0)} failed",
            ]
        return "\n".join(lines) + "\n"


def write_report(report: PromotionReport, directory: Path) -> Path:
    """`<dir>/promotion-<version>-<time>.json` + `last.json` + `last.md`; also appends the
    Markdown to $GITHUB_STEP_SUMMARY when a GitHub runner sets it."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = report.started_at.replace(":", "").replace("-", "")[:15]
    path = directory / f"promotion-{report.version}-{stamp}.json"
    text = json.dumps(report.as_dict(), indent=2, default=str)
    path.write_text(text, encoding="utf-8")
    (directory / "last.json").write_text(text, encoding="utf-8")
    (directory / "last.md").write_text(report.markdown(), encoding="utf-8")
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as fh:
            fh.write(report.markdown())
    return path
