"""Where a promotion acts: the local canary (gateway + two predictor slots) or KServe.

Both implement `Target`. The flow never knows which one it drives, so the logic the
local integration tests exercise is the logic CI runs against the cluster. The KServe
patches are pure functions (`canary_patch`, `promote_patch`, ...) so the cluster test can
render the patched InferenceService and validate it against the CRD schema offline.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass
from typing import Protocol

from helper.processes import ServiceError, http_ok
from helper.settings import Settings
from inference_service.promotion.registry import ModelRef, PromotionError


@dataclass(frozen=True)
class Deployed:
    """What the target serves now; `canary_percent == 0` with a canary = rolled back."""

    champion: str | None
    canary: str | None = None
    canary_percent: int = 0


@dataclass(frozen=True)
class Endpoints:
    """Base URLs: the public endpoint and each revision directly."""

    endpoint: str
    champion: str
    canary: str


class Target(Protocol):
    name: str
    served_name: str  # the model name in /v2/models/<name>/infer

    def deployed(self) -> Deployed | None: ...
    def smoke(self, ref: ModelRef, body: dict) -> tuple[bool, float | None, str]: ...
    def deploy_first(self, ref: ModelRef) -> None: ...
    def deploy_canary(self, ref: ModelRef, percent: int, timeout_s: float) -> None: ...
    def endpoints(self) -> Endpoints: ...
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
    """Drives `inference_service.serving_stack.ServingStack` (state.json + gateway)."""

    name = "local"

    def __init__(self, settings: Settings):
        from inference_service.serving_stack import ServingStack

        self.settings = settings
        self.stack = ServingStack(settings)
        self.served_name = settings.registered_model_name
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
        name it, so it gets no traffic: nothing is deployed yet. A pass leaves it warm for the
        canary step (one model load per promotion, not two); a failure stops it."""
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

        warm = getattr(self, "_warm", None)
        if warm is not None and warm.version == ref.version and warm.port == port:
            return warm, True
        return Revision(
            version=ref.version, storage_uri=ref.storage_uri, port=port, run_id=ref.run_id
        ), False

    def deploy_first(self, ref: ModelRef) -> None:
        from inference_service.state import ServingState, save_state

        rev, _ = self._revision(ref, self._slot())
        self.served_name = ref.name
        save_state(self.stack.state_path, ServingState(model_name=ref.name, champion=rev))
        self.stack.up()

    def deploy_canary(self, ref: ModelRef, percent: int, timeout_s: float) -> None:
        """Start the canary (bounded), route `percent` to it, wait until the gateway sees it.

        Same steps as `ServingStack.canary`, but with the promotion's readiness timeout and
        the predictor the smoke gate warmed; the state names the canary only once it is up."""
        from inference_service.state import save_state, with_canary

        deadline = time.monotonic() + timeout_s
        self.stack.up()  # champion + gateway running (no-op when they are)
        st = self.stack.state()
        rev, warm = self._revision(ref, self._slot())
        if st.canary is not None and st.canary.version == ref.version:
            rev, warm = st.canary, warm or False
        new = with_canary(st, rev, percent)  # validates before any process is touched
        proc = self.stack.predictor(st.model_name, rev)
        if not warm:
            proc.stop()  # whatever an earlier, rolled-back canary left in the slot
        proc.start(timeout=max(1.0, deadline - time.monotonic()))  # no-op when warm + healthy
        save_state(self.stack.state_path, new)
        gw = f"http://127.0.0.1:{self.settings.serve_port}/gateway/state"
        while time.monotonic() < deadline:
            if self._gateway_sees_ready(gw, rev.port):
                return
            time.sleep(0.25)
        raise ServiceError(f"gateway did not see the canary on port {rev.port} ready in time")

    @staticmethod
    def _gateway_sees_ready(url: str, port: int) -> bool:
        import requests

        if not http_ok(url):
            return False
        return bool(requests.get(url, timeout=2).json().get("ready", {}).get(str(port)))

    def endpoints(self) -> Endpoints:
        st = self.stack.state()
        if st is None or st.canary is None:
            raise PromotionError("no canary deployed")
        host = "http://127.0.0.1"
        return Endpoints(
            f"{host}:{self.settings.serve_port}",
            f"{host}:{st.champion.port}",
            f"{host}:{st.canary.port}",
        )

    def promote(self, ref: ModelRef) -> None:
        self.stack.promote()

    def rollback(self) -> None:
        """0 % to the canary first (the gateway re-reads state), then stop its process."""
        st = self.stack.state()
        if st is None or st.canary is None:
            self.discard_warm()  # a canary that never made it into the state
            raise PromotionError("no canary to roll back")
        self.stack.rollback()
        time.sleep(0.5)  # > the gateway's state re-read interval: no request is in flight to it
        self.stack.predictor(st.model_name, st.canary).stop()


# --- KServe --------------------------------------------------------------------------------

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
MODEL_VERSION_ANN = "ml-platform.io/model-version"
CHAMPION_ANN = "ml-platform.io/champion-version"
ROLLED_BACK_ANN = "ml-platform.io/rolled-back-version"
TAG_ROUTING_ANN = "serving.kserve.io/enable-tag-routing"


def canary_patch(ref: ModelRef, percent: int) -> dict:
    """New revision with `storageUri`, `percent` of the traffic; KServe keeps the previous
    ready revision for the rest. Tag routing gives `latest-`/`prev-` URLs for the analysis."""
    if not 0 < percent <= 100:
        raise ValueError(f"percent: {percent} is not in 1..100")
    return {
        "metadata": {
            "annotations": {
                MODEL_VERSION_ANN: ref.version,
                TAG_ROUTING_ANN: "true",
                ROLLED_BACK_ANN: None,
            }
        },
        "spec": {
            "predictor": {"canaryTrafficPercent": percent, "model": {"storageUri": ref.storage_uri}}
        },
    }


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


def tag_urls(isvc: dict) -> Endpoints:
    status = isvc.get("status") or {}
    pred = (status.get("components") or {}).get("predictor") or {}
    tags = {t.get("tag"): t.get("url") for t in pred.get("traffic") or [] if t.get("tag")}
    if not (status.get("url") and tags.get("prev") and tags.get("latest")):
        raise PromotionError(
            "InferenceService status has no prev/latest tag URLs "
            f"(is {TAG_ROUTING_ANN} set and the canary rolled out?)"
        )
    return Endpoints(status["url"], tags["prev"], tags["latest"])


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

    def __init__(self, settings: Settings, api=None, poll_s: float = 5.0):
        self.settings = settings
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

    def deploy_canary(self, ref: ModelRef, percent: int, timeout_s: float) -> None:
        self._patch(canary_patch(ref, percent))
        self._wait(lambda isvc: ready_at(isvc, percent), timeout_s)

    def _wait(self, done, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            isvc = self._get()
            if done(isvc):
                return isvc
            if time.monotonic() >= deadline:
                raise ServiceError(f"InferenceService {self.isvc} not ready in {timeout_s:.0f}s")
            time.sleep(self.poll_s)

    def endpoints(self) -> Endpoints:
        return tag_urls(self._get())

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
