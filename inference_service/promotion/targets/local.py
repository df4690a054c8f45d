"""The local promotion target: the serving stack's HAProxy and its two predictor slots.

The laptop twin of the KServe target (`kserve.py`): the candidate starts in the slot the
champion does not use, HAProxy's runtime API sets its share, and Prometheus scrapes both
predictors, so the analysis reads the same metrics it reads in a cluster. The smoke gate's
predictor is kept warm for the canary step: one model load per promotion, not two.
"""

from __future__ import annotations

import time

import httpx

from helper.processes import ServiceError
from helper.settings import Settings
from inference_service.promotion.registry import ModelRef, PromotionError
from inference_service.promotion.targets import Deployed


def _timed_post(
    url: str, body: dict, timeout: float, headers: dict | None = None
) -> tuple[bool, float, str]:
    start = time.perf_counter()
    try:
        resp = httpx.post(url, json=body, timeout=timeout, headers=headers)
    except httpx.HTTPError as exc:
        return False, (time.perf_counter() - start) * 1000, str(exc)
    ms = (time.perf_counter() - start) * 1000
    return resp.status_code == 200, ms, f"HTTP {resp.status_code}: {resp.text[:200]}"


class LocalTarget:
    """Drives `inference_service.serving_stack.ServingStack` (state.json + HAProxy)."""

    name = "local"

    def __init__(self, settings: Settings):
        from inference_service.serving_stack import ServingStack

        self.settings = settings
        self.stack = ServingStack(settings)
        self.served_name = settings.registered_model_name
        self.prometheus_url = settings.prometheus_url
        self.scrape_interval_s = settings.prometheus_scrape_interval_s
        self._warm = None  # the revision the smoke gate left running in the free slot

    def deployed(self) -> Deployed | None:
        st = self.stack.state()
        if st is None:
            return None
        self.served_name = st.model_name
        canary = st.canary.version if st.canary else None
        return Deployed(st.champion.version, canary, st.canary_percent if canary else 0)

    def _slot(self) -> int:
        """The predictor port a new model goes to: the one the champion does not use."""
        from inference_service.state import free_slot

        st = self.stack.state()
        return (
            self.settings.predictor_ports[1]
            if st is None
            else free_slot(st, self.settings.predictor_ports)
        )

    def smoke(self, ref: ModelRef, body: dict) -> tuple[bool, float | None, str]:
        """Start the model in the free predictor slot and time one answer. The state does not
        name it and HAProxy gives the slot weight 0, so it gets no traffic: nothing is
        deployed yet. A pass leaves it warm for the canary step (one model load per
        promotion, not two); a failure stops it."""
        from inference_service.state import Revision

        rev = Revision(
            version=ref.version, storage_uri=ref.storage_uri, port=self._slot(), run_id=ref.run_id
        )
        proc = self.stack.predictor(self.served_name, rev)
        proc.stop()  # whatever an earlier, rolled-back canary left in the slot
        try:
            proc.start(timeout=self.settings.promote_ready_timeout_s)
            url = f"http://127.0.0.1:{rev.port}/v2/models/{self.served_name}/infer"
            token = self.settings.auth_token
            headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else None
            ok, ms, detail = _timed_post(url, body, self.settings.promote_ready_timeout_s, headers)
        except ServiceError as exc:
            ok, ms, detail = False, None, str(exc)
        if ok:
            self._warm = rev
        else:
            proc.stop()
        return ok, ms, detail

    def discard_warm(self) -> None:
        """Stop the predictor the smoke gate left running (it never got traffic)."""
        if self._warm is not None:
            self.stack.predictor(self.served_name, self._warm).stop()
            self._warm = None

    def _revision(self, ref: ModelRef, port: int):
        from inference_service.state import Revision

        warm = self._warm
        if warm is not None and warm.version == ref.version and warm.port == port:
            return warm, True
        return Revision(
            version=ref.version, storage_uri=ref.storage_uri, port=port, run_id=ref.run_id
        ), False

    def prepare(self) -> None:
        """Champion, HAProxy and Prometheus running (no-op when they are)."""
        self.stack.up()

    def deploy_first(self, ref: ModelRef) -> None:
        from inference_service.state import ServingState, save_state

        rev, _ = self._revision(ref, self._slot())
        self.served_name = ref.name
        save_state(self.stack.state_path, ServingState(model_name=ref.name, champion=rev))
        self._warm = None
        self.stack.up()

    def deploy_canary(self, ref: ModelRef, percent: int, timeout_s: float) -> None:
        """Start the canary (bounded), wait until HAProxy has it in rotation and Prometheus
        has scraped its (zero) series, then give it `percent`. The state names the canary
        only once it is up; its first requests are counted from a scraped zero."""
        from inference_service.promotion.analysis import wait_observed
        from inference_service.promotion.prom import Prometheus
        from inference_service.state import revision_name, with_canary

        deadline = time.monotonic() + timeout_s
        self.stack.up()
        st = self.stack.state()
        rev, warm = self._revision(ref, self._slot())
        if st.canary is not None and st.canary.version == ref.version:
            rev, warm = st.canary, warm or False
        new = with_canary(st, rev, percent)  # validates before any process is touched
        proc = self.stack.predictor(st.model_name, rev)
        if not warm:
            proc.stop()  # whatever an earlier, rolled-back canary left in the slot
        proc.start(timeout=max(1.0, deadline - time.monotonic()))  # no-op when warm + healthy
        self._warm = None
        self.stack.wait_in_rotation(rev.port, timeout=max(1.0, deadline - time.monotonic()))
        wait_observed(
            Prometheus(self.prometheus_url),
            revision_name(st.model_name, rev.version),
            max(1.0, deadline - time.monotonic()),
        )
        self.stack._route(new)

    def set_canary_weight(self, percent: int) -> None:
        self.stack.set_canary_percent(percent)

    def revisions(self) -> tuple[str, str]:
        from inference_service.state import revision_name

        st = self.stack.state()
        if st is None or st.canary is None:
            raise PromotionError("no canary deployed")
        return (
            revision_name(st.model_name, st.champion.version),
            revision_name(st.model_name, st.canary.version),
        )

    def load_url(self) -> str | None:
        return f"http://127.0.0.1:{self.settings.serve_port}/v2/models/{self.served_name}/infer"

    def promote(self, ref: ModelRef) -> None:
        self.stack.promote()

    def rollback(self) -> None:
        """0 % to the canary (live through the runtime API), drain it, stop its process."""
        st = self.stack.state()
        if st is None or st.canary is None:
            self.discard_warm()  # a canary that never made it into the state
            raise PromotionError("no canary to roll back")
        self.stack.rollback()
