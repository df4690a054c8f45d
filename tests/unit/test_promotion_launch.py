"""The in-cluster promotion launcher (inference_service/promotion/launch.py, job.py) against a fake
Kubernetes API: the fake keeps Jobs, pods, ConfigMaps and a pod log the way the API server
and the Job controller would (409 on a duplicate name, 404 when gone, a pod that moves from
creating to running to terminated as time passes). The launcher under test is real."""

from __future__ import annotations

import io
import itertools

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from inference_service.promotion import launch
from inference_service.promotion.job import (
    CANDIDATE_CONFIGMAP,
    CANDIDATE_KEY,
    JobLauncher,
    LaunchError,
    Outcome,
)

NS = "ml-platform"
CANDIDATE = "MODEL_NAME=iris-classifier\nMODEL_VERSION=7\nSTORAGE_URI=s3://b/7\n"
REPORT = "## Promotion of iris-classifier v7 (kserve): **rolled_back**\n\ncanary rolled back\n"


def job_manifest() -> dict:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "promotion", "namespace": NS},
        "spec": {
            "activeDeadlineSeconds": 1800,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "promotion",
                            "args": ["promote", "--target=kserve"],
                            "env": [{"name": "HOME", "value": "/tmp"}],
                        }
                    ]
                }
            },
        },
    }


class FakeLog:
    def __init__(self, chunks: list[bytes]):
        self.chunks, self.released = chunks, False

    def stream(self, amt: int):
        yield from self.chunks

    def release_conn(self) -> None:
        self.released = True


class FakeKube:
    """BatchV1Api + CoreV1Api of one namespace. Time moves only through `sleep`."""

    def __init__(
        self,
        exit_code: int = 0,
        log: str = "gates ...\n" + REPORT,
        stuck: str | None = None,
        drop_stream_once: bool = False,
        pod_deleted_at_end: bool = False,
    ):
        self.exit_code, self.log, self.stuck = exit_code, log, stuck
        self.drop_stream_once, self.pod_deleted_at_end = drop_stream_once, pod_deleted_at_end
        self.jobs: dict[str, client.V1Job] = {}
        self.bodies: dict[str, dict] = {}
        self.configmaps: dict[str, dict] = {}
        self.pod_state: str | None = None  # None (no pod) | creating | running | done | gone
        self.log_calls: list[dict] = []
        self.now = 0.0
        self.deleting: dict[str, int] = {}
        self._uids = (f"uid-{i}" for i in itertools.count())

    # --- time ---------------------------------------------------------------------------
    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        for name in list(self.deleting):  # deletion takes a moment, as it does
            self.deleting[name] -= 1
            if self.deleting[name] <= 0:
                del self.deleting[name], self.jobs[name]
        if self.pod_state == "creating" and not self.stuck:
            self.pod_state = "running"

    # --- seed ---------------------------------------------------------------------------
    def add_job(self, name: str, finished: bool) -> None:
        cond = [client.V1JobCondition(type="Complete", status="True")] if finished else None
        self.jobs[name] = client.V1Job(
            metadata=client.V1ObjectMeta(name=name, uid=next(self._uids)),
            status=client.V1JobStatus(conditions=cond, active=None if finished else 1),
        )

    # --- batch --------------------------------------------------------------------------
    def create_namespaced_job(self, namespace, body):
        assert namespace == NS
        name = body["metadata"]["name"]
        if name in self.jobs:
            raise ApiException(status=409, reason="AlreadyExists")
        self.add_job(name, finished=False)
        self.bodies[name] = body
        self.pod_state = "creating"
        return self.jobs[name]

    def read_namespaced_job(self, name, namespace):
        if name not in self.jobs:
            raise ApiException(status=404, reason="NotFound")
        return self.jobs[name]

    def delete_namespaced_job(self, name, namespace, propagation_policy=None):
        if name not in self.jobs:
            raise ApiException(status=404, reason="NotFound")
        assert propagation_policy == "Background"  # the pod goes with the Job
        self.deleting[name] = 2

    # --- core ---------------------------------------------------------------------------
    def _pod(self) -> client.V1Pod:
        waiting = running = terminated = None
        if self.pod_state == "creating":
            waiting = client.V1ContainerStateWaiting(
                reason=self.stuck or "ContainerCreating", message="secret not found"
            )
        elif self.pod_state == "running":
            running = client.V1ContainerStateRunning()
        else:
            terminated = client.V1ContainerStateTerminated(exit_code=self.exit_code)
        state = client.V1ContainerState(waiting=waiting, running=running, terminated=terminated)
        status = client.V1ContainerStatus(
            name="promotion", state=state, image="i", image_id="", ready=False, restart_count=0
        )
        return client.V1Pod(
            metadata=client.V1ObjectMeta(name="promotion-abcde"),
            status=client.V1PodStatus(container_statuses=[status]),
        )

    def list_namespaced_pod(self, namespace, label_selector):
        assert label_selector == "job-name=promotion"
        items = [] if self.pod_state in (None, "gone") else [self._pod()]
        return client.V1PodList(items=items)

    def read_namespaced_pod(self, name, namespace):
        if self.pod_state in (None, "gone"):
            raise ApiException(status=404, reason="NotFound")
        return self._pod()

    def read_namespaced_pod_log(self, name, namespace, **kw):
        assert kw["follow"] is True and kw["container"] == "promotion"
        self.log_calls.append(kw)
        data = self.log.encode()
        if self.drop_stream_once and len(self.log_calls) == 1:
            return FakeLog([data[: len(data) // 2]])  # the connection drops; pod runs on
        start = len(data) // 2 if self.drop_stream_once else 0
        self.pod_state = "gone" if self.pod_deleted_at_end else "done"
        return FakeLog([data[start : start + 10], data[start + 10 :]])

    def create_namespaced_config_map(self, namespace, body):
        name = body["metadata"]["name"]
        if name in self.configmaps:
            raise ApiException(status=409, reason="AlreadyExists")
        self.configmaps[name] = body

    def replace_namespaced_config_map(self, name, namespace, body):
        self.configmaps[name] = body


def launcher(fake: FakeKube, out=None) -> JobLauncher:
    return JobLauncher(
        fake, fake, NS, out=out or io.StringIO(), poll_s=1.0, clock=fake.clock, sleep=fake.sleep
    )


@pytest.mark.parametrize("code", [0, 1, 2, 3, 4])
def test_the_jobs_exit_code_and_log_come_back(code):
    fake, out = FakeKube(exit_code=code), io.StringIO()
    outcome = launcher(fake, out).run(job_manifest(), CANDIDATE, timeout_s=600)
    assert outcome.code == code
    assert outcome.log == fake.log and out.getvalue() == fake.log


def test_an_unknown_exit_code_is_an_error_naming_it():
    outcome = launcher(FakeKube(exit_code=137)).run(job_manifest(), CANDIDATE, timeout_s=600)
    assert outcome.code == 1 and "137" in outcome.detail


def test_the_candidate_configmap_is_owned_by_the_job_it_was_made_for():
    fake = FakeKube()
    launcher(fake).run(job_manifest(), CANDIDATE, timeout_s=600)
    cm = fake.configmaps[CANDIDATE_CONFIGMAP]
    assert cm["data"] == {CANDIDATE_KEY: CANDIDATE}
    (owner,) = cm["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"]) == ("Job", fake.jobs["promotion"].metadata.uid)


def test_a_running_promotion_is_left_alone_and_exits_locked():
    fake = FakeKube()
    fake.add_job("promotion", finished=False)
    fake.configmaps[CANDIDATE_CONFIGMAP] = {"data": {"x": "the running one's"}}
    with pytest.raises(LaunchError) as err:
        launcher(fake).run(job_manifest(), CANDIDATE, timeout_s=600)
    assert err.value.code == 4 and "active" in str(err.value)
    assert fake.configmaps[CANDIDATE_CONFIGMAP] == {"data": {"x": "the running one's"}}
    assert "promotion" not in fake.deleting and fake.bodies == {}


def test_a_finished_job_of_an_earlier_run_is_replaced():
    fake = FakeKube(exit_code=0)
    fake.add_job("promotion", finished=True)
    old_uid = fake.jobs["promotion"].metadata.uid
    outcome = launcher(fake).run(job_manifest(), CANDIDATE, timeout_s=600)
    assert outcome.code == 0
    assert fake.jobs["promotion"].metadata.uid != old_uid


def test_losing_the_create_race_exits_locked_without_touching_the_candidate():
    fake = FakeKube()
    real_read = fake.read_namespaced_job
    calls = iter([ApiException(status=404)])

    def read_then_someone_creates(name, namespace):
        exc = next(calls, None)
        if exc is not None:  # our check sees nothing, then the other launcher creates it
            fake.add_job(name, finished=False)
            raise exc
        return real_read(name, namespace)

    fake.read_namespaced_job = read_then_someone_creates
    with pytest.raises(LaunchError) as err:
        launcher(fake).run(job_manifest(), CANDIDATE, timeout_s=600)
    assert err.value.code == 4 and "started first" in str(err.value)
    assert fake.configmaps == {}


def test_a_pod_that_cannot_start_fails_fast_and_frees_the_lock():
    fake = FakeKube(stuck="CreateContainerConfigError")
    with pytest.raises(LaunchError) as err:
        launcher(fake).run(job_manifest(), CANDIDATE, timeout_s=600)
    assert err.value.code == 1
    assert "CreateContainerConfigError" in str(err.value) and "secret not found" in str(err.value)
    assert fake.now < 10  # not at the timeout
    assert "promotion" in fake.deleting  # our Job is deleted, so the next run is not locked


def test_a_dropped_log_stream_is_followed_again():
    fake = FakeKube(exit_code=3, drop_stream_once=True)
    outcome = launcher(fake).run(job_manifest(), CANDIDATE, timeout_s=600)
    assert outcome.code == 3 and outcome.log == fake.log
    assert len(fake.log_calls) == 2 and "since_seconds" in fake.log_calls[1]


def test_a_pod_gone_before_its_status_was_read_is_an_error():
    fake = FakeKube(exit_code=0, pod_deleted_at_end=True)
    outcome = launcher(fake).run(job_manifest(), CANDIDATE, timeout_s=600)
    assert outcome.code == 1 and "disappeared" in outcome.detail


def test_model_version_and_extra_env_go_into_the_job():
    job = launch.with_candidate(job_manifest(), "9", {"MLP_PROMETHEUS_URL": "http://p:9090"})
    main = job["spec"]["template"]["spec"]["containers"][0]
    assert main["args"][-2:] == ["--model-version", "9"]
    assert {"name": "MLP_PROMETHEUS_URL", "value": "http://p:9090"} in main["env"]
    assert job_manifest()["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "promote",
        "--target=kserve",
    ]


def test_a_candidate_of_another_model_than_the_jobs_inference_service_is_refused():
    job = job_manifest()
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    env.append({"name": "MLP_KSERVE_ISVC_NAME", "value": "iris-classifier"})
    launch.check_candidate_model(job, CANDIDATE)  # same model: fine
    other = CANDIDATE.replace("iris-classifier", "breast-cancer-classifier")
    with pytest.raises(LaunchError, match="task platform:dataset"):
        launch.check_candidate_model(job, other)


def test_summary_is_the_promotions_report_or_the_log_tail(tmp_path):
    text = launch.summary_markdown(Outcome(3, "noise\n" + REPORT), "promotion")
    assert text == REPORT
    fallback = launch.summary_markdown(Outcome(1, "Traceback\nboom\n", "x"), "promotion")
    assert "exit 1" in fallback and "boom" in fallback
    path = tmp_path / "summary.md"
    launch.write_summary(text, str(path))
    assert path.read_text() == REPORT


def test_an_api_refusal_after_the_job_exists_deletes_it():
    fake = FakeKube()

    def forbidden(namespace, body):
        raise ApiException(status=403, reason="Forbidden")

    fake.create_namespaced_config_map = forbidden
    with pytest.raises(LaunchError) as err:
        launcher(fake).run(job_manifest(), CANDIDATE, timeout_s=600)
    assert err.value.code == 1 and "403" in str(err.value)
    assert "promotion" in fake.deleting  # its pod would wait for the ConfigMap forever


def test_cli_refuses_bad_input_before_touching_the_cluster(tmp_path, capsys):
    manifest = tmp_path / "job.yaml"
    manifest.write_text(yaml.safe_dump(job_manifest()))
    assert launch.main(["--manifest", str(manifest), "--env", "NOEQUALS"]) == 1
    assert "KEY=VALUE" in capsys.readouterr().err
    missing = tmp_path / "no.env.best_run"
    assert launch.main(["--manifest", str(manifest), "--best-run", str(missing)]) == 1
    assert "cannot read" in capsys.readouterr().err
    two = tmp_path / "two.yaml"
    two.write_text(yaml.safe_dump_all([job_manifest(), job_manifest()]))
    best = tmp_path / ".env.best_run"
    best.write_text(CANDIDATE)
    assert launch.main(["--manifest", str(two), "--best-run", str(best)]) == 1
    assert "exactly one Job" in capsys.readouterr().err
