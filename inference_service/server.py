"""Entry point of the predictor: `python -m inference_service.server --model_name NAME ...`.

This is also the ServingRuntime container's command: KServe passes
`--model_name={{.Name}} --model_dir=/mnt/models --http_port=8080`. Locally the
server binds `settings.serve_host` (127.0.0.1); in a pod pass `--host 0.0.0.0`
(or set MLP_SERVE_HOST). gRPC stays off unless `--enable_grpc` is given.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

import kserve
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from helper.errors import run_cli
from helper.settings import Settings, get_settings
from inference_service import metrics
from inference_service.auth import RequestGuard
from inference_service.one_write import OneWriteProtocol
from inference_service.predictor import MlflowPredictor

log = logging.getLogger(__name__)


def describe_validation_error(exc: RequestValidationError) -> str:
    """One line naming what is wrong with the body (FastAPI lists one error per union branch)."""
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "InferenceRequest")]
        if loc[:1] == ["bytes"]:
            continue  # the raw-bytes branch of the body union; its complaint is noise
        where = ".".join(loc) or "request body"
        msg = err.get("msg", "invalid")
        if err.get("type") == "json_invalid":
            where, msg = "request body", f"not valid JSON ({err.get('ctx', {}).get('error', '')})"
        parts.append(f"{where}: {msg}")
    return "; ".join(parts) or "invalid request body"


async def _validation_error_handler(_request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse(status_code=400, content={"error": describe_validation_error(exc)})


# FastAPI's reply when the body is not decodable at all (invalid UTF-8, JSON nested past the
# decoder's depth limit); it names nothing, so it is replaced by a message that does.
_FASTAPI_PARSE_ERROR = "There was an error parsing the body"


async def _http_error_handler(request, exc: HTTPException):
    if exc.status_code == 400 and exc.detail == _FASTAPI_PARSE_ERROR:
        msg = "request body: not valid JSON (invalid UTF-8, or nested too deeply)"
        return JSONResponse(status_code=400, content={"error": msg})
    return await http_exception_handler(request, exc)


class JsonContentType:
    """ASGI middleware: a reply without content-type gets application/json.

    The predictor hands kserve ready-made JSON bytes (see predictor._v2_response) and
    kserve's v2 endpoint drops the content-type header for byte bodies."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_type(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"content-type" for k, _ in headers):
                    headers.append((b"content-type", b"application/json"))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_type)


class LocalModelServer(kserve.ModelServer):
    """kserve's ModelServer with a configurable bind address (upstream hard-codes 0.0.0.0),
    malformed bodies answered with 400 + a one-line message instead of FastAPI's 422, and
    per-revision request metrics on kserve's own `/metrics` (inference_service.metrics)."""

    def __init__(
        self,
        *,
        host: str,
        auth_token: str | None = None,
        max_body_bytes: int | None = None,
        revision: str = "local",
        model_names: Sequence[str] = (),
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.host = host
        from kserve.model_server import app

        app.add_exception_handler(RequestValidationError, _validation_error_handler)
        app.add_exception_handler(HTTPException, _http_error_handler)
        app.add_middleware(JsonContentType)
        # Token and body size are checked before anything parses the body.
        app.add_middleware(RequestGuard, token=auth_token, max_body_bytes=max_body_bytes)
        # Outside the guard: counts what the client got, its 401/413 refusals included.
        app.add_middleware(metrics.RequestMetrics, revision=revision, models=model_names)

    async def _serve(self):
        # start() builds the REST server, then runs _serve(); uvicorn reads the host at bind time.
        if self._rest_server is not None:
            self._rest_server.config.host = self.host
            # headers and body in one write: a killed predictor never half-answers
            self._rest_server.config.http = OneWriteProtocol
        await super()._serve()


def _port(text: str) -> int:
    """argparse type: a TCP port, so a typo fails with one usage line, not a bind traceback."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a port number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is outside 1..65535")
    return value


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Serve one MLflow model with the KServe Python SDK")
    p.add_argument("--model_name", required=True, help="name in /v2/models/<name>")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model_dir", help="local directory holding MLmodel (KServe: /mnt/models)")
    src.add_argument("--storage_uri", help="s3://, models:/, runs:/ or a local path")
    p.add_argument("--http_port", type=_port, default=settings.serve_port)
    p.add_argument("--host", default=settings.serve_host, help="bind address")
    p.add_argument("--engine", choices=["auto", "native", "pyfunc"], default="auto")
    p.add_argument("--model_version", default=None, help="reported as x-model-version")
    p.add_argument(
        "--revision",
        default=metrics.revision_from_env(),
        help="metrics label naming this revision (default: $K_REVISION, set by Knative)",
    )
    p.add_argument("--enable_grpc", action="store_true", help="also serve gRPC v2")
    p.add_argument("--grpc_port", type=_port, default=None)
    p.add_argument(
        "--pyfunc_twin",
        action="store_true",
        help="also register <name>-pyfunc (same model via MLflow pyfunc), for benchmarks",
    )
    return p


def _class_names(settings: Settings, features: list[str]) -> list[str] | None:
    """Class names from the data set description, when it describes this model's features."""
    try:
        spec = settings.dataset
    except (OSError, ValueError):
        return None
    return list(spec.classes) if list(spec.features) == features else None


def build_models(args: argparse.Namespace, settings: Settings) -> list[MlflowPredictor]:
    source = {"model_dir": args.model_dir} if args.model_dir else {"storage_uri": args.storage_uri}
    main = MlflowPredictor(
        args.model_name,
        settings,
        engine=args.engine,
        model_version=args.model_version,
        revision=args.revision,
        **source,
    )
    main.load()
    main.class_names = _class_names(settings, main.model.features)
    models = [main]
    if args.pyfunc_twin:
        twin = MlflowPredictor(
            f"{args.model_name}-pyfunc",
            settings,
            model_dir=main.model.model_dir,
            engine="pyfunc",
            model_version=args.model_version,
            revision=args.revision,
        )
        twin.load()
        twin.class_names = main.class_names
        models.append(twin)
    return models


def main(argv: Sequence[str] | None = None) -> None:
    settings = get_settings()
    args = build_parser(settings).parse_args(argv)
    models = build_models(args, settings)
    server_kwargs = {"http_port": args.http_port, "enable_grpc": args.enable_grpc}
    if args.grpc_port is not None:
        server_kwargs["grpc_port"] = args.grpc_port
    log.info(
        "serving %s (%s) on %s:%s",
        args.model_name,
        models[0].model.engine,
        args.host,
        args.http_port,
    )
    for m in models:
        metrics.init_series(m.name, args.revision, m.class_names or ())
    token = settings.auth_token.get_secret_value() if settings.auth_token else None
    LocalModelServer(
        host=args.host,
        auth_token=token,
        max_body_bytes=settings.max_body_bytes,
        revision=args.revision,
        model_names=[m.name for m in models],
        **server_kwargs,
    ).start(models)


if __name__ == "__main__":
    run_cli(main)
