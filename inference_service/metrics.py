"""Prometheus metrics of one predictor revision: what the canary analysis reads.

kserve's ModelServer already serves `/metrics` from prometheus_client's default registry
(its own `request_predict_seconds` etc.), so these live in that registry too: one
endpoint, nothing else to scrape. Every series carries `model` and `revision`; the
revision is the same concept on the laptop and in the cluster (Knative sets `K_REVISION`
in the user container; the local serving stack passes its revision name), so the one
analysis spec queries both.

* `inference_requests_total{model,revision,status_class}` — inference requests by 2xx/4xx/5xx;
* `inference_request_duration_seconds{model,revision}` — server-side latency histogram;
* `inference_predictions_total{model,revision,class}` — predicted classes, one per row.

Series are created at zero when the model loads (all status classes, all known classes),
so a revision's first requests are counted from a scraped zero instead of being lost to
`increase()`'s "first sample is the baseline".
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable

from prometheus_client import Counter, Histogram

# Sub-millisecond to seconds: the predictor answers a row in ~1 ms, a 10k-row batch in ~20 ms.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip
STATUS_CLASSES = ("2xx", "4xx", "5xx")

REQUESTS = Counter(
    "inference_requests",
    "Inference requests answered, by status class",
    ["model", "revision", "status_class"],
)
LATENCY = Histogram(
    "inference_request_duration_seconds",
    "Inference request latency inside the predictor (body read to last byte sent)",
    ["model", "revision"],
    buckets=LATENCY_BUCKETS,
)
PREDICTIONS = Counter(
    "inference_predictions",
    "Predicted classes, one count per predicted row",
    ["model", "revision", "class"],
)

# /v2/models/<name>/infer, /v2/models/<name>/versions/<v>/infer, /v1/models/<name>:predict
_INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/[^/]+)?/infer$|^/v1/models/([^/:]+):predict$")


def revision_from_env(default: str = "local") -> str:
    """The Knative revision of this pod (K_REVISION), else `default`."""
    return os.environ.get("K_REVISION") or default


def init_series(model: str, revision: str, classes: Iterable[str]) -> None:
    """Create every series at zero (see module doc)."""
    for status in STATUS_CLASSES:
        REQUESTS.labels(model, revision, status)
    LATENCY.labels(model, revision)
    for name in classes:
        PREDICTIONS.labels(model, revision, name)


def count_predictions(model: str, revision: str, counts: Iterable[tuple[str, int]]) -> None:
    """Add (class, rows) pairs, e.g. from `np.unique(labels, return_counts=True)`."""
    for key, n in counts:
        PREDICTIONS.labels(model, revision, key).inc(n)


class RequestMetrics:
    """ASGI middleware: status class and latency of every inference request to a known model.

    Only inference routes of the models this server loaded are counted (probes and
    metadata are not traffic; an unknown model name must not mint label values)."""

    def __init__(self, app, *, revision: str, models: Iterable[str]):
        self.app = app
        self.revision = revision
        self.models = set(models)

    def _model(self, path: str) -> str | None:
        m = _INFER.match(path)
        if not m:
            return None
        name = m.group(1) or m.group(2)
        return name if name in self.models else None

    async def __call__(self, scope, receive, send):
        model = self._model(scope["path"]) if scope["type"] == "http" else None
        if model is None:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # an exception before the response started is a server error

        async def send_and_record(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            REQUESTS.labels(model, self.revision, f"{status // 100}xx").inc()
            LATENCY.labels(model, self.revision).observe(time.perf_counter() - start)
