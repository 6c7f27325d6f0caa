"""The OpenAI-compatible REST server in front of the controller and its workers.

Run:  python -m camel_chat.serve.openai_api_server --host localhost --port 8000 \\
          --controller-address http://localhost:21001 [--api-keys k1,k2] [--max-queue 256]

Then any OpenAI client works with `base_url="http://localhost:8000/v1"`:

    GET  /v1/models   /v1/models/{id}
    POST /v1/chat/completions   /v1/completions   /v1/embeddings   /v1/engines/{model}/embeddings
    GET  /health   /metrics (Prometheus)   /openapi.json (the request bodies too)   /docs

Every path also answers with a trailing slash (kagentsys POSTs `/v1/completions/`; no 307 that a
client could follow without its body). Errors are OpenAI's envelope
`{"error": {"message", "type", "param", "code"}}` with their real status: 400 bad parameters or a
prompt over the context, 401 bad key (constant-time compare), 404 unknown model, 413 body over
`--max-request-bytes`, 429 + `Retry-After` above `--max-queue` sequences in flight, 500, 503 no
worker. The endpoints are in openai_routes.py, the controller/worker plumbing in
openai_backend.py, the response shapes and SSE in openai_stream.py. Never imports torch.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from camel_chat.serve.errors import (
    PayloadTooLarge,
    ServeError,
    Unauthorized,
    add_error_handlers,
    error_headers,
    to_openai_error,
)
from camel_chat.serve.metrics import MetricsMiddleware, make_metrics, metrics_response
from camel_chat.serve.openai_backend import Admission, Backend
from camel_chat.serve.openai_routes import bodies, router
from camel_chat.serve.protocol import ErrorResponse

logger = logging.getLogger(__name__)
PUBLIC_PATHS = ("/health", "/metrics")


@dataclass
class Settings:
    """Everything `make_app` needs; the CLI flags map one to one."""

    controller_address: str = "http://localhost:21001"
    api_keys: tuple[str, ...] = ()
    max_request_bytes: int = 8 * 1024 * 1024
    max_queue: int = 256
    retry_after: float = 1.0
    model_list_ttl: float = 5.0
    worker_address_ttl: float = 1.0
    worker_timeout: float = 100.0
    keepalive: float = 15.0
    embedding_batch_size: int = 32
    allowed_origins: list[str] = field(default_factory=lambda: ["*"])
    allowed_methods: list[str] = field(default_factory=lambda: ["*"])
    allowed_headers: list[str] = field(default_factory=lambda: ["*"])
    allow_credentials: bool = False


async def send_error(send: Send, exc: ServeError) -> None:
    """Answer an ASGI request with the OpenAI error JSON for `exc`."""
    status, body = to_openai_error(exc)
    response = JSONResponse(body, status_code=status, headers=error_headers(exc))
    await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:  # JSONResponse never reads; present for the ASGI signature
    return {"type": "http.disconnect"}


class TrailingSlashMiddleware:
    """Serve `/v1/completions/` as `/v1/completions` (a redirect would cost clients their body)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and len(path) > 1 and path.endswith("/"):
            stripped = path.rstrip("/") or "/"
            scope = {**scope, "path": stripped, "raw_path": stripped.encode()}
        await self.app(scope, receive, send)


class ApiKeyMiddleware:
    """`Authorization: Bearer <key>` on everything but /health and /metrics (and CORS preflights).

    Every configured key is compared with `hmac.compare_digest`, all of them every time, so the
    answer's timing says nothing about how much of a key was right.
    """

    def __init__(self, app: ASGIApp, keys: Sequence[str]) -> None:
        self.app = app
        self.keys = [k.encode() for k in keys]

    def allowed(self, header: str | None) -> bool:
        scheme, _, token = (header or "").partition(" ")
        given = token.strip().encode() if scheme.lower() == "bearer" else b""
        ok = False
        for key in self.keys:
            ok |= hmac.compare_digest(given, key)
        return ok

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or scope.get("method") == "OPTIONS":
            await self.app(scope, receive, send)
            return
        if scope.get("path") in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        raw = headers.get(b"authorization")
        if not self.allowed(raw.decode("latin-1") if raw else None):
            message = (
                "Incorrect API key provided."
                if raw
                else "Missing API key: send 'Authorization: Bearer <key>'."
            )
            await send_error(send, Unauthorized(message))
            return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """413 for bodies over `limit` bytes: at once from Content-Length, else while reading."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        too_large = PayloadTooLarge(
            f"the request body is larger than the server's limit of {self.limit} bytes"
        )
        if length is not None and length.isdigit() and int(length) > self.limit:
            await send_error(send, too_large)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise too_large
            return message

        await self.app(scope, limited_receive, send)


def make_app(settings: Settings | None = None, http_client: httpx.AsyncClient | None = None) -> FastAPI:
    """The API server app. `http_client` (tests: a MockTransport) is used for every controller
    and worker call; without one the app makes a pooled client and closes it at shutdown."""
    settings = settings or Settings()
    owned = http_client is None
    client = http_client or httpx.AsyncClient(
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        timeout=httpx.Timeout(settings.worker_timeout, connect=5.0),
        trust_env=False,  # the control plane is internal: never route it through a proxy
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if owned:
                await client.aclose()

    app = FastAPI(title="camel_chat OpenAI-compatible API", lifespan=lifespan, redirect_slashes=False)
    metrics = make_metrics("openai_api")
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.started = int(time.time())
    app.state.backend = Backend(
        settings.controller_address,
        client,
        model_list_ttl=settings.model_list_ttl,
        address_ttl=settings.worker_address_ttl,
        worker_timeout=settings.worker_timeout,
    )
    app.state.admission = Admission(settings.max_queue, settings.retry_after, metrics.queue_depth.set)
    add_error_handlers(app)

    async def invalid_body(request: Request, exc: Exception) -> Response:
        # Bodies are validated by the handlers (lenient parsing, 413 while reading), so pydantic's
        # own ValidationError must be a 400 here too, not an unhandled 500.
        status, body = to_openai_error(exc)
        return JSONResponse(body, status_code=status)

    app.add_exception_handler(ValidationError, invalid_body)
    app.include_router(router)
    bodies.install(app, error=ErrorResponse)  # /openapi.json: the bodies the handlers parse by hand

    @app.get("/health")
    async def health() -> dict[str, Any]:
        admission = app.state.admission
        return {
            "status": "ok",
            "controller": settings.controller_address,
            "in_flight": admission.in_flight,
            "max_queue": admission.limit,
        }

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return metrics_response(metrics)

    # Added inside out: the last one added sees the request first.
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_request_bytes)
    app.add_middleware(ApiKeyMiddleware, keys=settings.api_keys)
    if settings.allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.allowed_origins,
            allow_credentials=settings.allow_credentials,
            allow_methods=settings.allowed_methods,
            allow_headers=settings.allowed_headers,
        )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(TrailingSlashMiddleware)
    return app


def _json_list(text: str) -> list[str]:
    try:
        value = json.loads(text)
    except ValueError:
        value = [part.strip() for part in text.split(",") if part.strip()]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise argparse.ArgumentTypeError(f"expected a JSON list, got {text!r}")
    return [str(v) for v in value]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m camel_chat.serve.openai_api_server",
        description="OpenAI-compatible API (/v1/...) over a camel_chat/FastChat controller and its workers.",
    )
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--controller-address", default="http://localhost:21001")
    p.add_argument(
        "--api-keys",
        type=lambda s: tuple(k for k in s.split(",") if k),
        default=None,
        help="comma-separated keys; requests then need 'Authorization: Bearer <key>' "
        "(default: $CAMEL_CHAT_API_KEYS, else no auth)",
    )
    p.add_argument("--allow-credentials", action="store_true")
    p.add_argument("--allowed-origins", type=_json_list, default=["*"], help="JSON list, e.g. '[\"*\"]'")
    p.add_argument("--allowed-methods", type=_json_list, default=["*"])
    p.add_argument("--allowed-headers", type=_json_list, default=["*"])
    p.add_argument(
        "--max-request-bytes",
        type=int,
        default=Settings.max_request_bytes,
        help="larger bodies are answered 413",
    )
    p.add_argument(
        "--max-queue",
        type=int,
        default=Settings.max_queue,
        help="worker sequences in flight through this server before 429 + Retry-After",
    )
    p.add_argument(
        "--model-list-ttl",
        type=float,
        default=Settings.model_list_ttl,
        help="seconds the controller's model list is cached",
    )
    p.add_argument(
        "--worker-address-ttl",
        type=float,
        default=Settings.worker_address_ttl,
        help="seconds a model's worker address is cached (0: ask the controller every request)",
    )
    p.add_argument(
        "--worker-timeout",
        type=float,
        default=float(os.environ.get("FASTCHAT_WORKER_API_TIMEOUT", Settings.worker_timeout)),
        help="seconds without a byte from a worker before the request fails",
    )
    p.add_argument("--embedding-batch-size", type=int, default=Settings.embedding_batch_size)
    p.add_argument("--ssl", action="store_true", help="serve HTTPS with $SSL_KEYFILE and $SSL_CERTFILE")
    p.add_argument("--log-level", default="info")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    keys = args.api_keys
    if keys is None:
        keys = tuple(k for k in os.environ.get("CAMEL_CHAT_API_KEYS", "").split(",") if k)
    settings = Settings(
        controller_address=args.controller_address,
        api_keys=keys,
        max_request_bytes=args.max_request_bytes,
        max_queue=args.max_queue,
        model_list_ttl=args.model_list_ttl,
        worker_address_ttl=args.worker_address_ttl,
        worker_timeout=args.worker_timeout,
        embedding_batch_size=args.embedding_batch_size,
        allowed_origins=args.allowed_origins,
        allowed_methods=args.allowed_methods,
        allowed_headers=args.allowed_headers,
        allow_credentials=args.allow_credentials,
    )
    import uvicorn

    ssl: dict[str, Any] = {}
    if args.ssl:
        ssl = {"ssl_keyfile": os.environ["SSL_KEYFILE"], "ssl_certfile": os.environ["SSL_CERTFILE"]}
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(make_app(settings), host=args.host, port=args.port, log_level=args.log_level, **ssl)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
