"""Canary analysis: replay held-out rows, measure each revision, decide.

The window has three streams over the same rows: through the public endpoint (what
users see: every request must get an answer, from either revision), and straight to the
champion and to the canary (so both score the *same* inputs: agreement, and errors and
p95 latency per revision). `decide` is pure so thresholds are tested without servers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from inference_service.promotion.gates import Check


@dataclass
class RevisionStats:
    """Requests sent straight to one revision, and what came back."""

    requests: int = 0
    errors: int = 0  # 5xx or no answer at all
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def p95_ms(self) -> float | None:
        return float(np.percentile(self.latencies_ms, 95)) if self.latencies_ms else None

    def summary(self) -> dict:
        p95 = self.p95_ms
        return {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": round(self.error_rate, 4),
            "p95_ms": None if p95 is None else round(p95, 2),
        }


@dataclass
class Window:
    """Everything measured during one analysis window."""

    champion: RevisionStats = field(default_factory=RevisionStats)
    canary: RevisionStats = field(default_factory=RevisionStats)
    compared: int = 0  # rows both revisions answered
    agreed: int = 0
    endpoint_requests: int = 0
    endpoint_answered: int = 0  # a non-5xx answer, from whichever revision
    endpoint_by_version: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.compared if self.compared else None

    def summary(self) -> dict:
        agreement = self.agreement
        return {
            "champion": self.champion.summary(),
            "canary": self.canary.summary(),
            "compared_rows": self.compared,
            "agreement": None if agreement is None else round(agreement, 4),
            "endpoint": {
                "requests": self.endpoint_requests,
                "answered": self.endpoint_answered,
                "lost": self.endpoint_requests - self.endpoint_answered,
                "by_version": dict(self.endpoint_by_version),
            },
            "seconds": round(self.seconds, 2),
        }


@dataclass(frozen=True)
class Thresholds:
    max_error_rate: float
    max_p95_ratio: float
    max_p95_ms: float
    min_agreement: float

    @classmethod
    def from_settings(cls, settings) -> Thresholds:
        return cls(
            max_error_rate=settings.promote_max_error_rate,
            max_p95_ratio=settings.promote_max_p95_ratio,
            max_p95_ms=settings.promote_max_p95_ms,
            min_agreement=settings.promote_min_agreement,
        )


# Sub-millisecond p95s are noise on a shared machine: the ratio is taken against at least this.
P95_FLOOR_MS = 1.0


def decide(window: Window, t: Thresholds) -> list[Check]:
    """One check per criterion; the canary passes only if all pass."""
    can, champ = window.canary, window.champion
    checks = []
    err_ok = can.requests > 0 and can.error_rate <= t.max_error_rate
    checks.append(
        Check(
            "error_rate",
            err_ok,
            f"canary errors {can.errors}/{can.requests} ({can.error_rate:.2%}) "
            f"vs max {t.max_error_rate:.2%}; champion {champ.errors}/{champ.requests}",
            {"canary": can.error_rate, "champion": champ.error_rate, "max": t.max_error_rate},
        )
    )
    cp95, hp95 = can.p95_ms, champ.p95_ms
    if cp95 is None:
        checks.append(Check("p95_latency", False, "canary answered no request", {}))
    else:
        limit = t.max_p95_ms
        if hp95 is not None:
            limit = min(limit, t.max_p95_ratio * max(hp95, P95_FLOOR_MS))
        checks.append(
            Check(
                "p95_latency",
                cp95 <= limit,
                f"canary p95 {cp95:.2f} ms vs limit {limit:.2f} ms (champion p95 "
                f"{hp95 if hp95 is None else round(hp95, 2)} ms, ratio {t.max_p95_ratio}, "
                f"ceiling {t.max_p95_ms} ms)",
                {"canary_ms": cp95, "champion_ms": hp95, "limit_ms": limit},
            )
        )
    agreement = window.agreement
    checks.append(
        Check(
            "agreement",
            agreement is not None and agreement >= t.min_agreement,
            f"canary agrees with champion on {window.agreed}/{window.compared} rows "
            f"vs min {t.min_agreement:.0%}",
            {"agreement": agreement, "min": t.min_agreement, "compared": window.compared},
        )
    )
    lost = window.endpoint_requests - window.endpoint_answered
    checks.append(
        Check(
            "endpoint",
            lost == 0,
            f"{window.endpoint_answered}/{window.endpoint_requests} endpoint requests answered",
            {"lost": lost, "by_version": dict(window.endpoint_by_version)},
        )
    )
    return checks


# --- traffic -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One HTTP exchange as the analysis needs it; status 0 = no answer (connection error)."""

    status: int
    latency_ms: float
    prediction: int | None = None
    version: str | None = None


Send = Callable[[str, dict], Reply]


def v2_body(features: Sequence[str], row: Sequence[float]) -> dict:
    """Open Inference Protocol v2 request for one row, one named input per feature
    (the same shape as inference_service/input.json)."""
    return {
        "inputs": [
            {"name": f, "shape": [1], "datatype": "FP32", "data": [float(v)]}
            for f, v in zip(features, row, strict=True)
        ],
        "parameters": {"content_type": "pd"},
    }


def http_sender(session, model_name: str, timeout: float = 10.0) -> Send:
    """POST a v2 body to `<base>/v2/models/<name>/infer` and parse `predict` + the version."""
    import requests

    def send(base: str, body: dict) -> Reply:
        start = time.perf_counter()
        try:
            resp = session.post(f"{base}/v2/models/{model_name}/infer", json=body, timeout=timeout)
        except requests.RequestException:
            return Reply(0, (time.perf_counter() - start) * 1000)
        ms = (time.perf_counter() - start) * 1000
        pred = None
        if resp.status_code == 200:
            try:
                outputs = {o["name"]: o for o in resp.json()["outputs"]}
                pred = int(outputs["predict"]["data"][0])
            except (ValueError, KeyError, IndexError, TypeError):
                pred = None
        return Reply(resp.status_code, ms, pred, resp.headers.get("x-model-version"))

    return send


def _failed(reply: Reply) -> bool:
    return reply.status == 0 or reply.status >= 500


def run_window(
    send: Send,
    endpoint: str,
    champion: str,
    canary: str,
    rows: Iterable[dict],
) -> Window:
    """Replay each body through the endpoint and straight to both revisions."""
    w = Window()
    start = time.perf_counter()
    for body in rows:
        via = send(endpoint, body)
        w.endpoint_requests += 1
        if not _failed(via):
            w.endpoint_answered += 1
            key = via.version or "?"
            w.endpoint_by_version[key] = w.endpoint_by_version.get(key, 0) + 1
        answers = []
        for stats, base in ((w.champion, champion), (w.canary, canary)):
            reply = send(base, body)
            stats.requests += 1
            if _failed(reply):
                stats.errors += 1
            else:
                stats.latencies_ms.append(reply.latency_ms)
            answers.append(reply.prediction)
        if None not in answers:
            w.compared += 1
            w.agreed += int(answers[0] == answers[1])
    w.seconds = time.perf_counter() - start
    return w


def window_bodies(features: Sequence[str], rows: np.ndarray, size: int) -> list[dict]:
    """`size` request bodies cycling over the held-out rows (a small test set repeats)."""
    if len(rows) == 0:
        raise ValueError("rows: the held-out test set is empty")
    return [v2_body(features, rows[i % len(rows)]) for i in range(size)]
