"""The promotion runs in the cluster, and its manifests agree with what they talk to.

promote.yml only reaches the Kubernetes API (the launcher); the Job reaches MLflow through
its Service and NetworkPolicy (the analysis reads Prometheus and sends no traffic, so no
predictor token), the
InferenceService through a Role that allows exactly that; the RayJob keeps its state on an
emptyDir. Read from the rendered overlays, so a rename on one side fails here.
"""

from __future__ import annotations

import pytest
import yaml

from helper import image_contract as ic
from helper import validate
from helper.settings import REPO_ROOT

pytestmark = pytest.mark.cluster

WORKFLOW = REPO_ROOT / ".github/workflows/promote.yml"
LAUNCH = "python -m inference_service.promotion.launch"


@pytest.fixture(scope="module")
def renders() -> dict[str, list[dict]]:
    root = REPO_ROOT
    return {
        "job": validate.render(root / "inference_service/k8s/overlays/promotion-prod"),
        "serving": validate.render(root / "inference_service/k8s/overlays/prod"),
        "ml": validate.render(root / "ml_platform/k8s/overlays/prod"),
        "ml-dev": validate.render(root / "ml_platform/k8s/overlays/dev"),
    }


def one(objs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [o for o in objs if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, (kind, name, [validate.object_name(o) for o in objs])
    return found[0]


@pytest.fixture(scope="module")
def job(renders) -> dict:
    return one(renders["job"], "Job")


@pytest.fixture(scope="module")
def pod(job) -> dict:
    return job["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def env(pod) -> dict[str, dict]:
    return {e["name"]: e for e in ic.container(pod, "promotion")["env"]}


def test_job_runs_the_promotion_cli_once_with_a_deadline(job, pod):
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and pod["restartPolicy"] == "Never"
    assert 0 < spec["activeDeadlineSeconds"] <= 3600 and spec["ttlSecondsAfterFinished"] > 0
    c = ic.container(pod, "promotion")
    assert c["command"] == ["python", "-m", "inference_service.promotion"]
    assert c["args"][:2] == ["promote", "--target=kserve"]
    assert c["image"].startswith("ghcr.io/ml-platform/predictor:")


def _selector_labels(policy: dict) -> list[dict]:
    return [
        p["podSelector"]["matchLabels"]
        for p in policy["spec"]["ingress"][0]["from"]
        if p.get("podSelector")
    ]


def test_job_pods_are_admitted_by_the_mlflow_network_policy(renders, job):
    labels = job["spec"]["template"]["metadata"]["labels"]
    for objs, name in ((renders["ml"], "mlflow-ingress"),):
        wanted = _selector_labels(one(objs, "NetworkPolicy", name))
        assert any(w.items() <= labels.items() for w in wanted), (name, wanted, labels)


def test_job_reaches_the_in_cluster_mlflow_service(renders, job, env):
    svc = one(renders["ml"], "Service", "mlflow")
    port = svc["spec"]["ports"][0]["port"]
    ns = svc["metadata"]["namespace"]
    assert env["MLFLOW_TRACKING_URI"]["value"] == f"http://mlflow.{ns}.svc.cluster.local:{port}"
    assert job["metadata"]["namespace"] == ns


def test_job_gets_s3_keys_from_their_secret_and_no_predictor_token(renders, env):
    refs = {
        name: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for name, e in env.items()
        if "secretKeyRef" in (e.get("valueFrom") or {})
    }
    assert refs == {
        "AWS_ACCESS_KEY_ID": ("s3-credentials", "AWS_ACCESS_KEY_ID"),
        "AWS_SECRET_ACCESS_KEY": ("s3-credentials", "AWS_SECRET_ACCESS_KEY"),
    }


def test_job_writes_only_to_emptydirs(pod, env):
    c = ic.container(pod, "promotion")
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = ic.emptydir_mounts(pod, c)
    assert "/tmp" in mounts
    for name in ("MLP_STATE_DIR", "HOME"):
        value = env[name]["value"]
        assert any(value == m or value.startswith(m + "/") for m in mounts), name


def test_job_account_may_only_read_and_patch_its_inferenceservice(renders, pod, env):
    serving = renders["serving"]
    account = pod["serviceAccountName"]
    one(serving, "ServiceAccount", account)
    bindings = [
        b
        for b in serving
        if b["kind"] == "RoleBinding"
        and any(s["kind"] == "ServiceAccount" and s["name"] == account for s in b["subjects"])
    ]
    assert len(bindings) == 1 and bindings[0]["roleRef"]["kind"] == "Role"
    role = one(serving, "Role", bindings[0]["roleRef"]["name"])
    isvc = one(serving, "InferenceService")
    assert role["rules"] == [
        {
            "apiGroups": ["serving.kserve.io"],
            "resources": ["inferenceservices"],
            "resourceNames": [isvc["metadata"]["name"]],
            "verbs": ["get", "watch", "patch"],
        }
    ]
    assert env["MLP_KSERVE_ISVC_NAME"]["value"] == isvc["metadata"]["name"]
    assert pod["automountServiceAccountToken"] is True


def test_nothing_cluster_wide_is_granted(renders):
    kinds = {o["kind"] for objs in renders.values() for o in objs}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}


def test_the_launcher_may_do_what_it_does(renders):
    """The calls the launcher (promotion/job.py) makes, against Role promotion-launcher's rules."""
    role = one(renders["serving"], "Role", "promotion-launcher")
    allowed = {
        (g, r, v)
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    needed = (
        {("batch", "jobs", v) for v in ("create", "get", "delete")}
        | {("", "pods", v) for v in ("get", "list")}
        | {
            ("", "pods/log", "get"),
            ("", "configmaps", "create"),
            ("", "configmaps", "update"),
        }
    )
    assert needed <= allowed


def test_workflow_only_launches_the_job(renders, job):
    text = WORKFLOW.read_text()
    doc = yaml.safe_load(text)
    for name, body in doc["jobs"].items():
        runs = "\n".join(s.get("run", "") for s in body["steps"])
        assert LAUNCH in runs, name
        assert "inference_service.promotion " not in runs.replace(LAUNCH, ""), name
        assert body["timeout-minutes"] * 60 > job["spec"]["activeDeadlineSeconds"], name
    for gone in ("MLFLOW_TRACKING_URI", "AWS_SECRET_ACCESS_KEY", "LAKE_URI", "S3_ENDPOINT_URL"):
        assert gone not in text, f"{gone}: the runner needs no MLflow/S3 access any more"


def test_workflow_uses_oidc_for_eks_and_a_kubeconfig_secret_otherwise():
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    with_token = {n for n, j in jobs.items() if j["permissions"].get("id-token") == "write"}
    assuming = {
        n
        for n, j in jobs.items()
        if any(
            str(s.get("uses", "")).startswith("aws-actions/configure-aws-credentials@")
            for s in j["steps"]
        )
    }
    assert with_token == assuming and len(assuming) == 1
    (eks,) = assuming
    assert any("aws eks update-kubeconfig" in s.get("run", "") for s in jobs[eks]["steps"])
    others = set(jobs) - assuming
    assert others and all("secrets.KUBECONFIG" in yaml.safe_dump(jobs[n]) for n in others)


@pytest.mark.parametrize("overlay", ["ml", "ml-dev"])
def test_rayjob_state_dir_is_on_an_emptydir_in_every_ray_pod(renders, overlay):
    rayjob = one(renders[overlay], "RayJob")
    cluster = rayjob["spec"]["rayClusterSpec"]
    pods = [cluster["headGroupSpec"]["template"]["spec"]]
    pods += [g["template"]["spec"] for g in cluster["workerGroupSpecs"]]
    for pod_spec in pods:
        c = ic.container(pod_spec)
        state = {e["name"]: e.get("value") for e in c["env"]}.get("MLP_STATE_DIR")
        mounts = ic.emptydir_mounts(pod_spec, c)
        assert state and any(state == m or state.startswith(m + "/") for m in mounts), (
            c["name"],
            state,
            mounts,
        )
