"""Start, stop and re-route the local serving processes: two predictor slots, HAProxy, Prometheus.

`python -m inference_service.serving_stack up|down|status|canary PERCENT|promote|rollback`
(what `task serve:*` calls). The predictors are `inference_service.server` processes on
`settings.predictor_ports`; HAProxy (`inference_service.proxy`) splits `settings.serve_port`
between them; the local Prometheus (`inference_service.prometheus_local`) scrapes both.
A canary is started and must report ready *before* the state names it, so a canary that
fails to load never receives traffic. Weights change through HAProxy's runtime API
(no restart); a slot that loses its traffic is drained before its process is stopped.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from helper.best_run import BestRunError, read_best_run
from helper.errors import run_cli
from helper.processes import ManagedProcess, ServiceError, http_ok
from helper.settings import Settings, get_settings
from inference_service import prometheus_local
from inference_service.proxy import Proxy, ProxyError
from inference_service.state import (
    Revision,
    ServingState,
    StateError,
    free_slot,
    load_state,
    promoted,
    revision_name,
    rolled_back,
    save_state,
    state_file,
    with_canary,
)

DRAIN_TIMEOUT_S = 10.0


class ServingStack:
    def __init__(self, settings: Settings, best_run_file: Path | None = None):
        self.settings = settings
        self.best_run_file = best_run_file or settings.best_run_file
        self.state_path = state_file(settings)

    # --- processes -------------------------------------------------------------------
    def _child_env(self) -> dict[str, str]:
        """Children must see the same settings even when these came from overrides."""
        s = self.settings
        env = {
            "MLP_STATE_DIR": str(s.state_dir),
            "MLP_SERVE_HOST": s.serve_host,
            "MLP_SERVE_PORT": str(s.serve_port),
            "MLP_MAX_BATCH_ROWS": str(s.max_batch_rows),
            "MLP_TRACKING_URI": s.tracking_uri,
            "MLP_DATASET_CONFIG": str(s.dataset_config),
            "MLP_MAX_BODY_BYTES": str(s.max_body_bytes),
        }
        if s.auth_token is not None:  # passed by environment only, never written to a file
            env["MLP_AUTH_TOKEN"] = s.auth_token.get_secret_value()
        return env | s.s3_env()

    def predictor(self, name: str, rev: Revision) -> ManagedProcess:
        argv = [
            sys.executable, "-m", "inference_service.server",
            "--model_name", name, "--storage_uri", rev.storage_uri,
            "--http_port", str(rev.port), "--host", self.settings.serve_host,
            "--model_version", rev.version, "--revision", revision_name(name, rev.version),
        ]  # fmt: skip
        ready = f"http://127.0.0.1:{rev.port}/v2/models/{name}/ready"
        return ManagedProcess(
            name=f"predictor-{rev.port}",
            argv=argv,
            run_dir=self.settings.run_dir,
            log_dir=self.settings.log_dir,
            port=rev.port,
            health=lambda: http_ok(ready),
            env=self._child_env(),
            host=self.settings.serve_host,
        )

    def proxy(self) -> Proxy:
        token = self.settings.auth_token
        env = {"MLP_AUTH_TOKEN": token.get_secret_value()} if token is not None else {}
        return Proxy(self.settings, env=env)  # the token by environment only, never a file

    def _slot_process(self, port: int) -> ManagedProcess:
        """Handle on whatever predictor runs in a slot (only used to stop it)."""
        dummy = Revision(version="-", storage_uri="-", port=port)
        return self.predictor("-", dummy)

    # --- state -----------------------------------------------------------------------
    def state(self) -> ServingState | None:
        return load_state(self.state_path)

    def _revision_from_best_run(self, port: int) -> Revision:
        best = read_best_run(self.best_run_file)
        return Revision(
            version=best["MODEL_VERSION"],
            storage_uri=best["STORAGE_URI"],
            port=port,
            run_id=best.get("RUN_ID"),
        )

    def _require_state(self) -> ServingState:
        st = self.state()
        if st is None:
            raise StateError("nothing deployed yet: run `task serve:up` first")
        return st

    # --- commands --------------------------------------------------------------------
    def up(self, resume_only: bool = False) -> ServingState:
        """Serve the saved state, or the best run as champion at 100 % when there is none.

        `resume_only` serves only what was deployed before (the pipeline uses it after the
        promotion, so a model the gates stopped is not served behind their back)."""
        saved = st = self.state()
        if st is None and resume_only:
            raise StateError("nothing has been deployed yet (the promotion deployed no model)")
        if st is None:
            champion = self._revision_from_best_run(self.settings.predictor_ports[0])
            st = ServingState(model_name=self.settings.registered_model_name, champion=champion)
        self.predictor(st.model_name, st.champion).start()
        if st.canary is not None and st.canary_percent > 0:
            try:
                self.predictor(st.model_name, st.canary).start()
            except ServiceError as exc:
                msg = f"canary {st.canary.version} did not start, 0 % to it: {exc}"
                print(msg, file=sys.stderr)
                st = st.model_copy(update={"canary_percent": 0})
        if st is not saved:  # an `up` of what already runs leaves the state file alone
            save_state(self.state_path, st)
        self.proxy().start(st)
        prometheus_local.start(self.settings)
        return st

    def down(self) -> None:
        """Stop HAProxy, every predictor slot and Prometheus; the state file stays for `up`."""
        self.proxy().stop()
        for port in self.settings.predictor_ports:
            self._slot_process(port).stop()
        prometheus_local.stop(self.settings)

    def _route(self, new: ServingState) -> None:
        """Persist `new`, then apply it live (a restart of HAProxy would read the same)."""
        save_state(self.state_path, new)
        self.proxy().apply(new)

    def wait_in_rotation(self, port: int, timeout: float = 20.0) -> None:
        """Until HAProxy's health check has the slot UP (it then gets its weight's share)."""
        deadline = time.monotonic() + timeout
        proxy = self.proxy()
        while time.monotonic() < deadline:
            if proxy.is_up(port):
                return
            time.sleep(0.1)
        raise ServiceError(f"HAProxy does not see the predictor on port {port} as up")

    def drain(self, port: int, timeout: float = DRAIN_TIMEOUT_S) -> None:
        """Wait until no request is in flight to a slot that has weight 0 (bounded)."""
        deadline = time.monotonic() + timeout
        proxy = self.proxy()
        while time.monotonic() < deadline:
            try:
                if proxy.servers().get(port, {}).get("current", 0) == 0:
                    return
            except ProxyError:
                return  # no proxy: nothing can be in flight through it
            time.sleep(0.05)

    def canary(self, percent: int, revision: Revision | None = None) -> ServingState:
        """Deploy the best run's model (or `revision`) as canary at `percent`."""
        st = self._require_state()
        port = free_slot(st, self.settings.predictor_ports)
        rev = revision or self._revision_from_best_run(port)
        same = st.canary is not None and st.canary.version == rev.version
        rev = st.canary if same else rev.model_copy(update={"port": port})
        new = with_canary(st, rev, percent)  # validates before any process is touched
        if not same:
            self._slot_process(port).stop()
        self.predictor(st.model_name, rev).start()  # raises if it cannot load: state unchanged
        self.wait_in_rotation(rev.port)
        self._route(new)
        return new

    def set_canary_percent(self, percent: int) -> ServingState:
        """Change only the canary's share (the promotion's steps)."""
        st = self._require_state()
        if st.canary is None:
            raise StateError("no canary deployed")
        new = with_canary(st, st.canary, percent)
        self._route(new)
        return new

    def promote(self) -> ServingState:
        st = self._require_state()
        new = promoted(st)
        save_state(self.state_path, new)
        proxy = self.proxy()
        proxy.apply(new, with_roles=False)  # the old champion's last answers still say so
        self.drain(st.champion.port)
        proxy.apply_roles(new)
        self._slot_process(st.champion.port).stop()
        return new

    def rollback(self) -> ServingState:
        """0 % to the canary (live), drain it, stop it; the champion is untouched."""
        st = self._require_state()
        new = rolled_back(st)
        self._route(new)
        self.drain(st.canary.port)
        self._slot_process(st.canary.port).stop()
        return new

    def status(self) -> dict:
        st = self.state()
        procs = {
            "haproxy": self.proxy().process(),
            "prometheus": prometheus_local.process(self.settings),
        }
        for port in self.settings.predictor_ports:
            procs[f"predictor-{port}"] = self._slot_process(port)
        try:
            servers = {str(k): v for k, v in self.proxy().servers().items()}
        except ProxyError:
            servers = None
        return {
            "endpoint": f"http://{self.settings.serve_host}:{self.settings.serve_port}",
            "proxy_stats": f"http://127.0.0.1:{self.settings.proxy_stats_port}/stats",
            "prometheus": self.settings.prometheus_url,
            "state": st.model_dump(mode="json") if st else None,
            "proxy_servers": servers,
            "processes": {name: p.pid() for name, p in procs.items()},
        }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Local serving: predictors + HAProxy + Prometheus")
    sub = p.add_subparsers(dest="cmd", required=True)
    for cmd in ("down", "status", "promote", "rollback"):
        sub.add_parser(cmd)
    up = sub.add_parser("up")
    up.add_argument("--resume", action="store_true", help="only restart what was deployed")
    c = sub.add_parser("canary")
    c.add_argument("percent", type=int)
    args = p.parse_args(argv)
    stack = ServingStack(get_settings())
    try:
        if args.cmd == "canary":
            result = stack.canary(args.percent)
        elif args.cmd == "down":
            stack.down()
            result = stack.status()
        elif args.cmd == "up":
            result = stack.up(resume_only=args.resume)
        else:
            result = getattr(stack, args.cmd)()
    except (StateError, ServiceError, BestRunError) as exc:
        print(f"serve {args.cmd}: {exc}", file=sys.stderr)
        return 1
    out = result.model_dump(mode="json") if isinstance(result, ServingState) else result
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    run_cli(main)
