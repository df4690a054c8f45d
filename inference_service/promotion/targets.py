"""Where a promotion acts: the local canary (HAProxy + two predictor slots) or KServe.

Both implement `Target`. The flow never knows which one it drives, so the logic the
local integration tests exercise is the logic CI runs against the cluster: set a canary
share, name the two revisions for the analysis' queries, promote or roll back. The KServe
patches are pure functions (`canary_patch`, `step_patch`, `promote_patch`, ...) so the
cluster test can render the patched InferenceService and validate it against the CRD
schema offline.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass
from typing import Protocol

from helper.processes import ServiceError
from helper.settings import Settings
from inference_service.promotion.registry import ModelRef, PromotionError

# The cluster Prometheus scrapes the predictor pods this often (platform/monitoring-values.yaml).
CLUSTER_SCRAPE_INTERVAL_S = 10.0


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


def _timed_post(
    url: str, body: dict, timeout: float, headers: dict | None = None
) -> tuple[bool, float, str]:
    import requests

    start = time.perf_counter()
    try:
        resp = requests.post(url, json=body, timeout=timeout, headers=headers)
    except requests.RequestException as exc:
        return False, (time.perf_counter() - start) * 1000, str(exc)
    ms = (time.perf_counter() - start) * 1000
    return resp.status_code == 200, ms, f"HTTP {resp.status_code}: {resp.text[:200]}"


# --- local ---------------------------------------------------------------------------------


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


# --- KServe --------------------------------------------------------------------------------

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
MODEL_VERSION_ANN = "ml-platform.io/model-version"
CHAMPION_ANN = "ml-platform.io/champion-version"
ROLLED_BACK_ANN = "ml-platform.io/rolled-back-version"


def canary_patch(ref: ModelRef, percent: int) -> dict:
    """New revision with `storageUri`, `percent` of the traffic; KServe keeps the previous
    ready revision for the rest (the analysis' first step)."""
    if not 0 < percent <= 100:
        raise ValueError(f"percent: {percent} is not in 1..100")
    return {
        "metadata": {"annotations": {MODEL_VERSION_ANN: ref.version, ROLLED_BACK_ANN: None}},
        "spec": {
            "predictor": {"canaryTrafficPercent": percent, "model": {"storageUri": ref.storage_uri}}
        },
    }


def step_patch(percent: int) -> dict:
    """The next analysis step: only the canary's share changes (no new revision)."""
    if not 0 < percent <= 100:
        raise ValueError(f"percent: {percent} is not in 1..100")
    return {"spec": {"predictor": {"canaryTrafficPercent": percent}}}


def promote_patch(ref: ModelRef) -> dict:
    """Drop canaryTrafficPercent: the latest revision gets 100 %."""
    return {
        "metadata": {"annotations": {CHAMPION_ANN: ref.version}},
        "spec": {"predictor": {"canaryTrafficPercent": None}},
    }


def rollback_patch(version: str) -> dict:
    """0 % to the latest revision: all traffic back on the previous (champion) revision."""
    return {
        "metadata": {"annotations": {ROLLED_BACK_ANN: version}},
        "spec": {"predictor": {"canaryTrafficPercent": 0}},
    }


def first_deploy_patch(ref: ModelRef) -> dict:
    return {
        "metadata": {"annotations": {MODEL_VERSION_ANN: ref.version, CHAMPION_ANN: ref.version}},
        "spec": {
            "predictor": {"canaryTrafficPercent": None, "model": {"storageUri": ref.storage_uri}}
        },
    }


def merge_patch(target: dict, patch: dict) -> dict:
    """RFC 7386 JSON merge patch (what the API server does with it), without mutating."""
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            out[key] = merge_patch(out.get(key, {}), value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def deployed_from(isvc: dict) -> Deployed:
    ann = (isvc.get("metadata") or {}).get("annotations") or {}
    pred = (isvc.get("spec") or {}).get("predictor") or {}
    latest = ann.get(MODEL_VERSION_ANN)
    champion = ann.get(CHAMPION_ANN) or latest
    percent = pred.get("canaryTrafficPercent")
    if percent is None or latest == champion:
        return Deployed(champion)
    return Deployed(champion, latest, int(percent))


def ready_at(isvc: dict, percent: int) -> bool:
    """Ready condition true and the latest revision carries `percent` of the traffic."""
    status = isvc.get("status") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    if conditions.get("Ready") != "True":
        return False
    traffic = ((status.get("components") or {}).get("predictor") or {}).get("traffic") or []
    return any(t.get("latestRevision") and t.get("percent") == percent for t in traffic)


def traffic_revisions(isvc: dict) -> tuple[str, str]:
    """(champion, canary) Knative revision names from the status' traffic split: the
    revision label the analysis' queries select (Knative sets K_REVISION in the pod)."""
    pred = ((isvc.get("status") or {}).get("components") or {}).get("predictor") or {}
    latest = prev = None
    for t in pred.get("traffic") or []:
        name = t.get("revisionName")
        if not name or not t.get("percent"):
            continue
        if t.get("latestRevision"):
            latest = name
        else:
            prev = name
    if not (latest and prev):
        raise PromotionError(
            "InferenceService status names no previous + latest revision with traffic "
            "(has the canary rolled out?)"
        )
    return prev, latest


def load_cluster_config(token_file: str | None = None, cert_file: str | None = None) -> str:
    """Configure the `kubernetes` client; returns which configuration was used.

    In a pod (the promotion Job) the ServiceAccount's in-cluster credentials, scoped by its
    Role; elsewhere (a laptop, `task promote TARGET=kserve`) the kubeconfig from KUBECONFIG
    or ~/.kube/config. The file arguments exist for tests; the defaults are the kubelet's.
    """
    from kubernetes import config
    from kubernetes.config import incluster_config

    try:
        incluster_config.InClusterConfigLoader(
            token_filename=token_file or incluster_config.SERVICE_TOKEN_FILENAME,
            cert_filename=cert_file or incluster_config.SERVICE_CERT_FILENAME,
        ).load_and_set()
        return "in-cluster"
    except config.ConfigException:
        pass
    try:  # KUBECONFIG read now, not when the kubernetes package was imported
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    except (config.ConfigException, OSError) as exc:
        raise ServiceError(
            "kubernetes: not in a pod (no service account token) and no usable kubeconfig "
            f"(KUBECONFIG={os.environ.get('KUBECONFIG', '~/.kube/config')}): {exc}"
        ) from None
    return "kubeconfig"


class KServeTarget:
    """Patches the InferenceService through the Kubernetes API and reads its status."""

    name = "kserve"
    scrape_interval_s = CLUSTER_SCRAPE_INTERVAL_S

    def __init__(self, settings: Settings, api=None, poll_s: float = 5.0):
        self.settings = settings
        self.prometheus_url = settings.cluster_prometheus_url
        self.namespace = settings.kserve_namespace
        self.isvc = settings.kserve_isvc_name
        self.served_name = settings.kserve_isvc_name
        self.poll_s = poll_s
        self._api = api

    @property
    def api(self):
        if self._api is None:
            from kubernetes import client

            load_cluster_config()
            self._api = client.CustomObjectsApi()
        return self._api

    def _get(self) -> dict:
        return self.api.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, self.isvc
        )

    def _patch(self, patch: dict) -> dict:
        return self.api.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, self.isvc, patch
        )

    def deployed(self) -> Deployed | None:
        from kubernetes.client.exceptions import ApiException

        try:
            isvc = self._get()
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        dep = deployed_from(isvc)
        return None if dep.champion in (None, "filled-from-model.env") else dep

    def smoke(self, ref: ModelRef, body: dict) -> tuple[bool, float | None, str]:
        """Load through the predictor's own load path on the runner and answer `body`
        (the cluster's storage initializer uses the same URI)."""
        import numpy as np

        from inference_service.model_loader import ModelLoadError, fetch_model, load_model

        try:
            loaded = load_model(fetch_model(ref.storage_uri, self.settings))
            start = time.perf_counter()
            row = {i["name"]: i["data"][0] for i in body["inputs"]}
            x = np.asarray([[row[f] for f in loaded.features]], dtype=np.float32)
            loaded.predict_labels(x)
            return True, (time.perf_counter() - start) * 1000, "loaded on the runner"
        except (ModelLoadError, KeyError) as exc:
            return False, None, str(exc)

    def deploy_first(self, ref: ModelRef) -> None:
        """Point the existing InferenceService at the first champion; creating it is the
        manifests' job (`inference_service/k8s`), not the promotion's."""
        from kubernetes.client.exceptions import ApiException

        try:
            self._patch(first_deploy_patch(ref))
        except ApiException as exc:
            if exc.status != 404:
                raise
            raise PromotionError(
                f"InferenceService {self.namespace}/{self.isvc} does not exist: apply "
                "inference_service/k8s/overlays/prod first"
            ) from None
        self._wait(lambda isvc: ready_at(isvc, 100), self.settings.promote_ready_timeout_s)

    def prepare(self) -> None:
        """The InferenceService and the cluster's Prometheus exist already (platform/)."""

    def deploy_canary(self, ref: ModelRef, percent: int, timeout_s: float) -> None:
        self._patch(canary_patch(ref, percent))
        self._wait(lambda isvc: ready_at(isvc, percent), timeout_s)

    def set_canary_weight(self, percent: int) -> None:
        """One analysis step: patch canaryTrafficPercent, wait until the route carries it."""
        self._patch(step_patch(percent))
        self._wait(lambda isvc: ready_at(isvc, percent), self.settings.promote_ready_timeout_s)

    def revisions(self) -> tuple[str, str]:
        return traffic_revisions(self._get())

    def load_url(self) -> str | None:
        """None: in the cluster the analysis judges real users' traffic, it sends none."""
        return None

    def _wait(self, done, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            isvc = self._get()
            if done(isvc):
                return isvc
            if time.monotonic() >= deadline:
                raise ServiceError(f"InferenceService {self.isvc} not ready in {timeout_s:.0f}s")
            time.sleep(self.poll_s)

    def discard_warm(self) -> None:
        """The smoke load ran on the runner: nothing to stop."""

    def promote(self, ref: ModelRef) -> None:
        self._patch(promote_patch(ref))
        self._wait(lambda isvc: ready_at(isvc, 100), self.settings.promote_ready_timeout_s)

    def rollback(self) -> None:
        dep = deployed_from(self._get())
        if dep.canary is None:
            raise PromotionError("no canary to roll back")
        self._patch(rollback_patch(dep.canary))


def make_target(kind: str, settings: Settings) -> Target:
    if kind == "local":
        return LocalTarget(settings)
    if kind == "kserve":
        return KServeTarget(settings)
    raise PromotionError(f"target: '{kind}' is not one of local, kserve")
