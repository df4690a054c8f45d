"""ops.get_k8s_config against a local fake of the IONOS Cloud API (never the internet).

The fake only answers the documented path with the right bearer token, so a wrong URL
or a missing header fails the test rather than passing by accident.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml
from pytest_httpserver import HTTPServer

from helper.processes import free_port
from ops import get_k8s_config as g

CLUSTER = "3f0c8f43-1b1e-4f55-9d0b-5c3d1c2f7a10"
TOKEN = "fake-test-token"  # pragma: allowlist secret
PATH = f"/cloudapi/v6/k8s/{CLUSTER}/kubeconfig"


def kubeconfig(name: str, server: str = "https://k8s.example.invalid:443") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": name,
        "clusters": [{"name": name, "cluster": {"server": server}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin"}}],
        "users": [{"name": f"{name}-admin", "user": {"token": "cluster-user-token"}}],
    }


NEW = kubeconfig("mlp-prod")
NEW_TEXT = yaml.safe_dump(NEW, sort_keys=False)


@pytest.fixture(autouse=True)
def _env(monkeypatch, tmp_path):
    for key in ("IONOS_TOKEN", "MLP_IONOS_TOKEN", "IONOS_API_URL", "MLP_IONOS_API_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env from a developer checkout


@pytest.fixture
def api(httpserver: HTTPServer) -> str:
    return httpserver.url_for("/cloudapi/v6")


def serve(httpserver: HTTPServer, body: str | dict, status: int = 200) -> None:
    """Answer the documented path, and only when the right bearer token is sent."""
    handler = httpserver.expect_request(
        PATH, method="GET", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    if isinstance(body, dict):
        handler.respond_with_json(body, status=status)
    else:
        handler.respond_with_data(body, status=status, content_type="application/yaml")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- fetching ---------------------------------------------------------------------


def test_fetch_sends_bearer_token_to_documented_path(httpserver, api):
    serve(httpserver, NEW_TEXT)
    text = g.fetch_kubeconfig(CLUSTER, TOKEN, api)
    assert yaml.safe_load(text) == NEW
    (request, _), *_ = httpserver.log
    assert request.path == PATH
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_fetch_accepts_json_object_and_json_string(httpserver, api):
    serve(httpserver, NEW)
    assert yaml.safe_load(g.fetch_kubeconfig(CLUSTER, TOKEN, api)) == NEW
    httpserver.clear()
    httpserver.expect_request(PATH).respond_with_json(NEW_TEXT)
    assert yaml.safe_load(g.fetch_kubeconfig(CLUSTER, TOKEN, api)) == NEW


def test_missing_token_is_a_clear_error_and_sends_nothing(httpserver, api):
    serve(httpserver, NEW_TEXT)
    with pytest.raises(g.KubeconfigError, match="IONOS_TOKEN is not set"):
        g.fetch_kubeconfig(CLUSTER, None, api)
    assert httpserver.log == []


def test_cluster_id_must_be_a_uuid(httpserver, api):
    with pytest.raises(g.KubeconfigError, match="cluster-id: '../etc' is not a UUID"):
        g.fetch_kubeconfig("../etc", TOKEN, api)
    assert httpserver.log == []


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, "rejected the token \\(401 Unauthorized\\)"),
        (403, "403 Forbidden"),
        (404, f"no cluster {CLUSTER} \\(404 Not Found\\)"),
        (500, "failed with 500"),
        (503, "failed with 503"),
    ],
)
def test_api_errors_become_one_line_messages(httpserver, api, status, expected):
    serve(httpserver, f'{{"httpStatus": {status}, "messages": []}}', status=status)
    with pytest.raises(g.KubeconfigError, match=expected) as info:
        g.fetch_kubeconfig(CLUSTER, TOKEN, api)
    assert "\n" not in str(info.value)
    assert TOKEN not in str(info.value)


def test_unreachable_api_is_a_clear_error():
    dead = f"http://127.0.0.1:{free_port()}/cloudapi/v6"
    with pytest.raises(g.KubeconfigError, match="cannot reach IONOS API"):
        g.fetch_kubeconfig(CLUSTER, TOKEN, dead, timeout=2)


@pytest.mark.parametrize("body", ["just: [unrelated", "kind: Config\nclusters: []\n", "- a\n- b\n"])
def test_a_non_kubeconfig_answer_is_rejected(httpserver, api, body):
    serve(httpserver, body)
    with pytest.raises(g.KubeconfigError, match="IONOS API response"):
        g.fetch_kubeconfig(CLUSTER, TOKEN, api)


# --- writing ----------------------------------------------------------------------


def test_new_file_is_written_0600_in_a_created_directory(tmp_path):
    out = tmp_path / "home" / ".kube" / "config"
    assert g.write_kubeconfig(NEW_TEXT, out) is None
    assert yaml.safe_load(out.read_text()) == NEW
    assert mode_of(out) == 0o600
    assert mode_of(out.parent) == 0o700


def test_existing_file_is_backed_up_then_merged(tmp_path):
    out = tmp_path / "config"
    old = kubeconfig("kind-local", server="https://127.0.0.1:6443")
    old_text = yaml.safe_dump(old)
    out.write_text(old_text)
    out.chmod(0o644)

    backup = g.write_kubeconfig(NEW_TEXT, out, mode="merge")

    assert backup is not None and backup.read_text() == old_text
    assert mode_of(backup) == 0o600
    merged = yaml.safe_load(out.read_text())
    assert [c["name"] for c in merged["clusters"]] == ["kind-local", "mlp-prod"]
    assert [u["name"] for u in merged["users"]] == ["kind-local-admin", "mlp-prod-admin"]
    assert merged["current-context"] == "mlp-prod"
    assert mode_of(out) == 0o600


def test_merge_replaces_entries_with_the_same_name(tmp_path):
    out = tmp_path / "config"
    out.write_text(yaml.safe_dump(kubeconfig("mlp-prod", server="https://old.invalid")))
    g.write_kubeconfig(NEW_TEXT, out)
    merged = yaml.safe_load(out.read_text())
    assert merged["clusters"] == NEW["clusters"]


@pytest.mark.parametrize("mode", ["merge", "replace"])
def test_refetching_the_same_config_makes_no_backup(tmp_path, mode):
    out = tmp_path / "config"
    flow_style = yaml.safe_dump(NEW, default_flow_style=True)  # same content, other layout
    g.write_kubeconfig(flow_style, out)
    assert g.write_kubeconfig(NEW_TEXT, out, mode=mode) is None
    assert g.write_kubeconfig(NEW_TEXT, out, mode=mode) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config"]


def test_replace_mode_overwrites_after_backup(tmp_path):
    out = tmp_path / "config"
    out.write_text(yaml.safe_dump(kubeconfig("kind-local")))
    backup = g.write_kubeconfig(NEW_TEXT, out, mode="replace")
    assert backup is not None and "kind-local" in backup.read_text()
    assert out.read_text() == NEW_TEXT


def test_unparseable_existing_file_is_left_alone_in_merge_mode(tmp_path):
    out = tmp_path / "config"
    out.write_text("this: is: not: yaml:\n")
    with pytest.raises(g.KubeconfigError, match=str(out)):
        g.write_kubeconfig(NEW_TEXT, out)
    assert out.read_text() == "this: is: not: yaml:\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config"]


# --- entry point ------------------------------------------------------------------


def test_main_writes_the_file_using_settings_from_env(
    httpserver, api, tmp_path, monkeypatch, capsys
):
    serve(httpserver, NEW_TEXT)
    monkeypatch.setenv("IONOS_TOKEN", TOKEN)
    monkeypatch.setenv("IONOS_API_URL", api)
    out = tmp_path / "kube" / "config"
    assert g.main(["--cluster-id", CLUSTER, "--output", str(out)]) == 0
    assert yaml.safe_load(out.read_text()) == NEW
    assert str(out) in capsys.readouterr().out


def test_main_without_token_exits_1_with_one_line(httpserver, api, tmp_path, capsys):
    out = tmp_path / "config"
    rc = g.main(["--cluster-id", CLUSTER, "--output", str(out), "--api-url", api])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.count("\n") == 1 and err.startswith("error: IONOS_TOKEN is not set")
    assert not out.exists()


def test_main_on_404_keeps_the_existing_file(httpserver, api, tmp_path, monkeypatch, capsys):
    serve(httpserver, "not found", status=404)
    monkeypatch.setenv("IONOS_TOKEN", TOKEN)
    out = tmp_path / "config"
    out.write_text("precious: true\n")
    rc = g.main(["--cluster-id", CLUSTER, "--output", str(out), "--api-url", api])
    assert rc == 1
    assert "404" in capsys.readouterr().err
    assert out.read_text() == "precious: true\n"
