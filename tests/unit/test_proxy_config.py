"""The generated HAProxy and Prometheus configs: pure rendering, plus the real binaries'
own config checks (`haproxy -c`, `promtool check config`) on every variant."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess

import pytest
import yaml

from helper.settings import load_settings
from inference_service import prometheus_local
from inference_service.haproxy_config import render_config, render_roles, roles, weights
from inference_service.proxy import Proxy
from inference_service.state import Revision, ServingState

PORTS = (18091, 18092)
TOKEN = "s3cret-token-value"  # noqa: S105 - a test value, never a real token


def settings(tmp_path, **kw):
    return load_settings(
        state_dir=tmp_path / "state",
        serve_port=18080,
        predictor_ports=PORTS,
        proxy_stats_port=18404,
        prometheus_port=19090,
        max_body_bytes=4096,
        **kw,
    )


CHAMPION = ServingState(
    model_name="iris", champion=Revision(version="1", storage_uri="x", port=PORTS[0])
)
CANARY = CHAMPION.model_copy(
    update={"canary": Revision(version="2", storage_uri="y", port=PORTS[1]), "canary_percent": 30}
)
ROLLED_BACK = CANARY.model_copy(update={"canary_percent": 0})


def test_weights_and_roles_follow_the_state():
    assert weights(None, PORTS) == {PORTS[0]: 0, PORTS[1]: 0}
    assert weights(CHAMPION, PORTS) == {PORTS[0]: 100, PORTS[1]: 0}
    assert weights(CANARY, PORTS) == {PORTS[0]: 70, PORTS[1]: 30}
    assert weights(ROLLED_BACK, PORTS) == {PORTS[0]: 100, PORTS[1]: 0}
    assert roles(CANARY, PORTS) == {PORTS[0]: "champion", PORTS[1]: "canary"}
    assert roles(CHAMPION, PORTS) == {PORTS[0]: "champion", PORTS[1]: "idle"}
    assert render_roles(CANARY, PORTS) == f"slot{PORTS[0]} champion\nslot{PORTS[1]} canary\n"


def test_config_binds_loopback_splits_by_weight_and_never_holds_the_token(tmp_path):
    s = settings(tmp_path, auth_token=TOKEN)
    cfg = render_config(s, CANARY, token_env="MLP_AUTH_TOKEN")
    assert "bind 127.0.0.1:18080" in cfg and "bind 127.0.0.1:18404" in cfg
    assert "balance random(1)" in cfg  # weighted, order-independent (not random(2))
    assert f"server slot{PORTS[0]} 127.0.0.1:{PORTS[0]} weight 70" in cfg
    assert f"server slot{PORTS[1]} 127.0.0.1:{PORTS[1]} weight 30" in cfg
    assert "option httpchk GET /v2/models/iris/ready" in cfg
    assert "retry-on all-retryable-errors" in cfg and "option redispatch 1" in cfg
    assert "gt 4096" in cfg and "max_body_bytes" in cfg
    assert '"${MLP_AUTH_TOKEN}"' in cfg and TOKEN not in cfg
    assert "prometheus-exporter" in cfg and "/etc/haproxy" not in cfg
    open_cfg = render_config(s, CANARY, token_env=None)
    assert "authorization" not in open_cfg


def test_written_files_are_private_and_tokenless(tmp_path):
    s = settings(tmp_path, auth_token=TOKEN)
    proxy = Proxy(s, env={"MLP_AUTH_TOKEN": TOKEN})
    proxy.write_files(CANARY)
    for path in (proxy.files.config, proxy.files.roles):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert TOKEN not in path.read_text()


def test_a_state_dir_too_deep_for_a_unix_socket_is_refused(tmp_path):
    from inference_service.proxy import ProxyError

    deep = tmp_path / ("d" * 60) / ("e" * 60)
    with pytest.raises(ProxyError, match="too deep for a unix socket"):
        Proxy(load_settings(state_dir=deep))


def test_prometheus_config_scrapes_both_slots_and_the_proxy(tmp_path):
    s = settings(tmp_path, prometheus_scrape_interval_s=0.5)
    doc = yaml.safe_load(prometheus_local.render_config(s))
    assert doc["global"]["scrape_interval"] == "500ms"
    jobs = {j["job_name"]: j["static_configs"][0]["targets"] for j in doc["scrape_configs"]}
    assert jobs == {
        "predictor": [f"127.0.0.1:{p}" for p in PORTS],
        "haproxy": ["127.0.0.1:18404"],
    }
    argv = prometheus_local.process(s).argv
    assert "--web.listen-address=127.0.0.1:19090" in argv
    assert any(a.startswith("--storage.tsdb.path=") and str(tmp_path) in a for a in argv)


# --- the real binaries' own checks ------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("state", [None, CHAMPION, CANARY, ROLLED_BACK], ids=str)
@pytest.mark.parametrize("token", [None, TOKEN], ids=["open", "token"])
def test_haproxy_accepts_every_generated_config(tmp_path, state, token):
    from inference_service.proxy import haproxy_binary

    s = settings(tmp_path, auth_token=token)
    proxy = Proxy(s, env={"MLP_AUTH_TOKEN": token} if token else {})
    proxy.write_files(state)
    out = subprocess.run(
        [haproxy_binary(), "-c", "-f", str(proxy.files.config)],
        capture_output=True,
        text=True,
        env={**os.environ, **proxy.env},
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stderr


@pytest.mark.integration
def test_promtool_accepts_the_generated_prometheus_config(tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with the Debian package prometheus (task local:deps)"
    path = tmp_path / "prometheus.yml"
    path.write_text(prometheus_local.render_config(settings(tmp_path)))
    out = subprocess.run(
        [promtool, "check", "config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
