"""Canary state transitions, the routing decision and the gateway's ASGI behaviour, no network."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from inference_service.gateway import Gateway, Router
from inference_service.http1 import Request, Response
from inference_service.serving_stack import read_best_run
from inference_service.state import (
    Revision,
    ServingState,
    StateError,
    free_slot,
    load_state,
    promoted,
    rolled_back,
    save_state,
    with_canary,
)

PORTS = (7001, 7002)


def champion_only() -> ServingState:
    return ServingState(
        model_name="iris", champion=Revision(version="1", storage_uri="s3://b/m1", port=PORTS[0])
    )


def canary_rev(version="2") -> Revision:
    return Revision(version=version, storage_uri=f"s3://b/m{version}", port=PORTS[1])


# --- transitions -----------------------------------------------------------------------
def test_canary_promote_rollback_cycle():
    st = with_canary(champion_only(), canary_rev(), 25)
    assert [(r, rev.version, p) for r, rev, p in st.routes()] == [
        ("champion", "1", 75),
        ("canary", "2", 25),
    ]
    back = rolled_back(st)
    assert back.champion == st.champion and back.canary_percent == 0
    assert [r for r, _, _ in back.routes()] == ["champion"]
    up = promoted(st)
    assert up.champion.version == "2" and up.canary is None
    assert up.routes()[0][2] == 100
    assert free_slot(up, PORTS) == PORTS[0]


@pytest.mark.parametrize(
    "action, message",
    [
        (lambda st: with_canary(st, canary_rev("1"), 10), "already the champion"),
        (lambda st: with_canary(st, canary_rev().model_copy(update={"port": PORTS[0]}), 10),
         "champion's"),
        (lambda st: with_canary(st, canary_rev(), 101), "between 0 and 100"),
        (promoted, "no canary to promote"),
        (rolled_back, "no canary to roll back"),
    ],
)  # fmt: skip
def test_transitions_that_make_no_sense_are_refused(action, message):
    with pytest.raises(StateError, match=message):
        action(champion_only())


def test_state_round_trips_and_survives_a_reload(tmp_path):
    path = tmp_path / "serving" / "state.json"
    assert load_state(path) is None
    st = with_canary(champion_only(), canary_rev(), 40)
    save_state(path, st)
    again = load_state(path)
    assert again.canary == st.canary and again.canary_percent == 40
    assert list(path.parent.iterdir()) == [path]  # no temp files left behind


def test_a_corrupt_state_file_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"model_name": "iris", "canary_percent": 500}))
    with pytest.raises(StateError, match="state.json"):
        load_state(path)


def test_best_run_file_parsing(tmp_path):
    f = tmp_path / ".env.best_run"
    f.write_text("# comment\nMODEL_NAME=iris\nMODEL_VERSION='3'\nSTORAGE_URI=s3://b/x\nRUN_ID=r\n")
    assert read_best_run(f)["MODEL_VERSION"] == "3"
    f.write_text("MODEL_NAME=iris\n")
    with pytest.raises(StateError, match="MODEL_VERSION, STORAGE_URI"):
        read_best_run(f)
    with pytest.raises(StateError, match="ml:register"):
        read_best_run(tmp_path / "absent")


# --- routing ---------------------------------------------------------------------------
def router_with(tmp_path, st: ServingState, seed=0) -> Router:
    path = tmp_path / "state.json"
    save_state(path, st)
    router = Router(path, random.Random(seed))
    router.refresh(force=True)
    return router


def test_split_follows_the_percentage_when_both_are_ready(tmp_path):
    router = router_with(tmp_path, with_canary(champion_only(), canary_rev(), 30))
    router.ready = {PORTS[0]: True, PORTS[1]: True}
    picks = [router.choose()[0][0] for _ in range(20_000)]
    share = picks.count("canary") / len(picks)
    assert abs(share - 0.30) < 4 * (0.3 * 0.7 / len(picks)) ** 0.5
    # the canary is always backed by the champion as a fallback
    assert all(c[-1][0] == "champion" for c in (router.choose() for _ in range(50)))


def test_a_canary_that_never_reported_ready_gets_no_traffic(tmp_path):
    router = router_with(tmp_path, with_canary(champion_only(), canary_rev(), 100))
    router.ready = {PORTS[0]: True}
    assert {router.choose()[0][0] for _ in range(200)} == {"champion"}


def test_the_router_picks_up_a_changed_state_file(tmp_path):
    router = router_with(tmp_path, with_canary(champion_only(), canary_rev(), 100))
    router.ready = {PORTS[0]: True, PORTS[1]: True}
    assert router.choose()[0][0] == "canary"
    save_state(router.path, promoted(router.state))
    router.refresh(force=True)
    assert router.choose() == [("champion", "2", PORTS[1])]


# --- the gateway's own answers, without a network -------------------------------------
def call(gateway: Gateway, path: str) -> Response:
    return asyncio.run(gateway.handle(Request("POST", path.encode(), {}, b"{}")))


def test_gateway_without_a_deployment_answers_503_with_the_fix(tmp_path):
    response = call(Gateway(Router(tmp_path / "none.json")), "/v2/models/iris/infer")
    assert response.status == 503 and "serve:up" in json.loads(response.body)["error"]


def test_gateway_state_endpoint_reports_the_routing(tmp_path):
    router = router_with(tmp_path, with_canary(champion_only(), canary_rev(), 10))
    response = call(Gateway(router), "/gateway/state")
    assert response.status == 200 and json.loads(response.body)["state"]["canary_percent"] == 10


def test_gateway_refuses_inference_without_the_token_but_not_probes(tmp_path):
    gateway = Gateway(Router(tmp_path / "none.json"), token="s3cret")
    refused = gateway.check_head("POST", "/v2/models/iris/infer", {})
    assert refused.status == 401 and b"missing bearer token" in refused.body
    assert (b"www-authenticate", b"Bearer") in refused.headers
    ok = {b"authorization": b"Bearer s3cret"}
    assert gateway.check_head("POST", "/v2/models/iris/infer", ok) is None
    assert gateway.check_head("GET", "/gateway/state", {}) is None


def test_an_unreachable_revision_is_marked_not_ready_and_answered_502(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    st = ServingState(model_name="iris", champion=Revision(version="1", storage_uri="x", port=port))
    router = router_with(tmp_path, st)
    response = call(Gateway(router), "/v2/models/iris/infer")
    assert response.status == 502 and "champion (version 1) unreachable" in response.body.decode()
    assert router.ready[port] is False
