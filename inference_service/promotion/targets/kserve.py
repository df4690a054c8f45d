"""The KServe promotion target: the InferenceService patched through the Kubernetes API.

The patches are pure functions (`canary_patch`, `step_patch`, `promote_patch`, ...) so the
cluster test can render the patched InferenceService and validate it against the CRD schema
offline; `KServeTarget` only sends them and waits for the status to show their effect. The
two revision names the analysis queries come from the status' traffic split.
"""

from __future__ import annotations

import copy
import os
import time

import tenacity

from helper.processes import ServiceError
from helper.settings import Settings
from inference_service.promotion.registry import ModelRef, PromotionError
from inference_service.promotion.targets import Deployed

# The cluster Prometheus scrapes the predictor pods this often (platform/monitoring-values.yaml).
CLUSTER_SCRAPE_INTERVAL_S = 10.0

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
        """The InferenceService once `done(isvc)`, read every `poll_s` for `timeout_s`; an
        API error is not retried (it propagates, as a patch's would)."""

        def not_ready(_state: tenacity.RetryCallState) -> dict:
            raise ServiceError(f"InferenceService {self.isvc} not ready in {timeout_s:.0f}s")

        return tenacity.Retrying(
            retry=tenacity.retry_if_result(lambda isvc: not done(isvc)),
            stop=tenacity.stop_after_delay(timeout_s),
            wait=tenacity.wait_fixed(self.poll_s),
            retry_error_callback=not_ready,
        )(self._get)

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
