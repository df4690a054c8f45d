"""A minimal Prometheus HTTP API client: readiness, instant queries, known metric names.

The analysis reads only Prometheus (never its own client's timings), so its failure modes
are named: `PrometheusUnavailable` (not reachable: no promotion), `PromQLError` (the query
is wrong: a spec problem, reported with the field).
"""

from __future__ import annotations

import math

import httpx

from inference_service.promotion.registry import PromotionError


class PrometheusUnavailable(PromotionError):
    """Prometheus did not answer; nothing can be judged, so nothing is promoted."""


class PromQLError(PromotionError):
    """Prometheus refused the query (parse error, wrong types); the message is Prometheus'."""


class Prometheus:
    def __init__(self, url: str, timeout: float = 10.0, session: httpx.Client | None = None):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = session or httpx.Client(timeout=timeout)

    def _get(self, path: str, params: dict | None = None) -> httpx.Response:
        try:
            resp = self.session.get(f"{self.url}{path}", params=params, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise PrometheusUnavailable(
                f"Prometheus at {self.url} is not reachable ({type(exc).__name__}); "
                "locally `task serve:up` starts it, in a cluster see platform/README.md"
            ) from None
        return resp

    def ready(self) -> None:
        resp = self._get("/-/ready")
        if resp.status_code != 200:
            raise PrometheusUnavailable(
                f"Prometheus at {self.url} is not ready (HTTP {resp.status_code})"
            )

    def query(self, promql: str) -> float | None:
        """The single value of an instant query; None for no data (empty, NaN or ±Inf).

        A query returning several series is an error: a check must aggregate to one value."""
        resp = self._get("/api/v1/query", {"query": promql})
        try:
            doc = resp.json()
        except ValueError:
            raise PrometheusUnavailable(
                f"Prometheus at {self.url} answered HTTP {resp.status_code} without JSON"
            ) from None
        if doc.get("status") != "success":
            if resp.status_code >= 500 and doc.get("errorType") not in ("bad_data", "execution"):
                raise PrometheusUnavailable(f"Prometheus at {self.url}: {doc.get('error')}")
            raise PromQLError(str(doc.get("error") or doc))
        data = doc["data"]
        if data["resultType"] == "scalar":
            value = float(data["result"][1])
        elif data["resultType"] == "vector":
            result = data["result"]
            if not result:
                return None
            if len(result) > 1:
                raise PromQLError(
                    f"returned {len(result)} series; a check must aggregate to one value "
                    "(sum, max, ...)"
                )
            value = float(result[0]["value"][1])
        else:
            raise PromQLError(f"returned a {data['resultType']}; a check needs an instant value")
        return value if math.isfinite(value) else None

    def metric_names(self) -> set[str]:
        """Every metric name Prometheus holds samples for."""
        doc = self._get("/api/v1/label/__name__/values").json()
        return set(doc.get("data") or [])
