"""Run-time facts a pod depends on, checked without a cluster: the state dir is refused when
it cannot be written (pods run with a read-only /app), and the KServe target finds the API
server from inside a pod (ServiceAccount token) or, elsewhere, from the kubeconfig."""

from __future__ import annotations

import pytest
import yaml

from helper.settings import load_settings
from inference_service.promotion.targets import kserve


def test_a_state_dir_that_cannot_be_created_is_named_with_the_setting(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    settings = load_settings(state_dir=blocker / "state")
    problem = settings.state_dir_problem()
    assert problem is not None
    assert problem.startswith(f"state_dir: {blocker / 'state'} is not writable")
    assert "MLP_STATE_DIR" in problem


def test_a_writable_state_dir_passes_and_keeps_nothing_behind(tmp_path):
    settings = load_settings(state_dir=tmp_path / "new" / "state")
    assert settings.state_dir_problem() is None
    assert list((tmp_path / "new" / "state").iterdir()) == []


def test_tune_preflight_reports_the_state_dir_before_anything_slow(tmp_path):
    from ml_platform.tune import preflight

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    settings = load_settings(state_dir=blocker, tracking_uri="http://127.0.0.1:9")
    problems = preflight(settings, need_lake=False)
    assert any(p.startswith("state_dir:") for p in problems), problems


def _kubeconfig(path, server: str) -> None:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
            }
        )
    )


def test_in_a_pod_the_service_account_is_used(tmp_path, monkeypatch):
    from kubernetes import client

    token, ca = tmp_path / "token", tmp_path / "ca.crt"
    token.write_text("sa-token")
    ca.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    _kubeconfig(tmp_path / "kubeconfig", "https://elsewhere.invalid:6443")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    assert kserve.load_cluster_config(str(token), str(ca)) == "in-cluster"
    conf = client.Configuration.get_default_copy()
    assert conf.host == "https://10.0.0.1:443"
    assert conf.api_key["BearerToken"].lower() == "bearer sa-token"


def test_outside_a_pod_the_kubeconfig_is_used(tmp_path, monkeypatch):
    from kubernetes import client

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    _kubeconfig(tmp_path / "kubeconfig", "https://laptop.invalid:6443")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    assert kserve.load_cluster_config(str(tmp_path / "no-token"), str(tmp_path / "no-ca")) == (
        "kubeconfig"
    )
    assert client.Configuration.get_default_copy().host == "https://laptop.invalid:6443"


def test_the_kserve_target_loads_its_config_through_that_function(monkeypatch):
    seen = []
    monkeypatch.setattr(kserve, "load_cluster_config", lambda: seen.append(1) or "in-cluster")
    target = kserve.KServeTarget(load_settings())
    assert target.api is not None and seen == [1]


@pytest.fixture(autouse=True)
def _restore_client_default():
    from kubernetes import client

    saved = client.Configuration.get_default_copy()
    yield
    client.Configuration.set_default(saved)


def test_no_cluster_credentials_at_all_is_one_clear_error(tmp_path, monkeypatch):
    from helper.processes import ServiceError

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(ServiceError, match="no usable kubeconfig"):
        kserve.load_cluster_config(str(tmp_path / "no-token"), str(tmp_path / "no-ca"))
