"""The controller: the registry of model workers, dispatch, and FastChat's control-plane HTTP API.

Run:  python -m camel_chat.serve.controller --host localhost --port 21001 \\
          --dispatch-method shortest_queue --heart-beat-expiration 90 [--secret TOKEN]

Workers register (`/register_worker`) and send heartbeats (`/receive_heart_beat`); clients ask
`/get_worker_address` for a worker serving a model, or stream through `/worker_generate_stream`.
All JSON is FastChat's (spec §7.4), so FastChat workers and clients work unchanged. Beyond FastChat:

- an expiry loop checks every few seconds (`--expiry-check-interval`) and drops workers whose last
  heartbeat is older than `--heart-beat-expiration` (about 3 worker heartbeat intervals);
- a worker that fails (proxy error, failed status fetch) leaves dispatch at once; it comes back
  when it re-registers (its next heartbeat is answered `exist: false`);
- `--secret` (or $CAMEL_CHAT_CONTROLLER_SECRET) makes registration and heartbeats require
  `Authorization: Bearer <secret>`;
- every worker call is async (httpx) with a timeout; `/health` and Prometheus `/metrics`.

`camel_chat.serve.registry.Registry` is the pure, clock-injected state; `make_app` wraps it.
Never imports torch.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from prometheus_client import Gauge

from camel_chat.json_scan import json_path_of_surrogate
from camel_chat.serve.disconnect import ClosingStreamingResponse
from camel_chat.serve.errors import (
    BadRequest,
    ErrorCode,
    ServiceUnavailable,
    Unauthorized,
    add_error_handlers,
)
from camel_chat.serve.metrics import MetricsMiddleware, make_metrics, metrics_response
from camel_chat.serve.protocol import (
    GetWorkerAddressRequest,
    GetWorkerAddressResponse,
    HeartBeatRequest,
    HeartBeatResponse,
    ListModelsResponse,
    NulSplitter,
    RegisterWorkerRequest,
    WorkerStatus,
    error_chunk,
    frame_chunk,
)
from camel_chat.serve.registry import DISPATCH_METHODS, DispatchMethod, Registry

log = logging.getLogger(__name__)


@dataclass
class ControllerSettings:
    host: str = "localhost"
    port: int = 21001
    dispatch_method: DispatchMethod = "shortest_queue"
    heart_beat_expiration: float = 90.0
    expiry_check_interval: float = 5.0
    secret: str | None = None
    status_timeout: float = 5.0  # controller -> worker /worker_get_status
    worker_timeout: float = 100.0  # controller -> worker generation stream (FASTCHAT_WORKER_API_TIMEOUT)


def _check_secret(request: Request, secret: str | None) -> None:
    if not secret:
        return
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), secret.encode()):
        raise Unauthorized("this controller requires 'Authorization: Bearer <secret>' to register")


def _check_worker_name(name: str) -> None:
    try:
        url = httpx.URL(name) if name.startswith(("http://", "https://")) else None
    except httpx.InvalidURL:  # e.g. a lone surrogate or a bad port in the name (issue 17)
        url = None
    if url is None or not url.host:
        raise BadRequest(
            f"worker_name must be the worker's base URL (http://host:port), got {name!r}", param="worker_name"
        )


async def fetch_status(client: httpx.AsyncClient, worker: str, timeout: float) -> WorkerStatus | None:
    """POST <worker>/worker_get_status; None when the worker does not answer a valid status."""
    try:
        r = await client.post(worker + "/worker_get_status", timeout=timeout)
        r.raise_for_status()
        return WorkerStatus.model_validate(r.json())
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("status of worker %s unavailable: %s", worker, exc)
        return None


def make_app(
    settings: ControllerSettings | None = None,
    *,
    registry: Registry | None = None,
    clock: Callable[[], float] = time.monotonic,
    expiry_interval: float | None = None,
    http_client: httpx.AsyncClient | None = None,
) -> FastAPI:
    """The controller app. `registry`, `clock`, `expiry_interval` and `http_client` are for tests."""
    settings = settings or ControllerSettings()
    registry = registry or Registry(settings.dispatch_method, settings.heart_beat_expiration, clock)
    interval = settings.expiry_check_interval if expiry_interval is None else expiry_interval

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(_expiry_loop(registry, interval), name="controller-expiry")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if app.state.owns_client and app.state.http_client is not None:
                await app.state.http_client.aclose()

    app = FastAPI(title="camel_chat controller", lifespan=lifespan)
    app.state.settings = settings
    app.state.registry = registry
    app.state.http_client = http_client
    app.state.owns_client = http_client is None
    app.state.metrics = metrics = make_metrics("controller")
    workers_gauge = Gauge(
        "workers",
        "Registered workers",
        namespace="camel_chat",
        subsystem="controller",
        registry=metrics.registry,
    )
    add_error_handlers(app)
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    def client() -> httpx.AsyncClient:
        # Created on first use so the app also works where lifespan never runs (ASGITransport).
        if app.state.http_client is None:
            app.state.http_client = httpx.AsyncClient(timeout=settings.worker_timeout)
        return app.state.http_client

    def require_secret(request: Request) -> None:
        # A dependency, so a caller without the secret gets 401 before its body is even validated.
        _check_secret(request, settings.secret)

    @app.post("/register_worker", dependencies=[Depends(require_secret)])
    async def register_worker(req: RegisterWorkerRequest) -> None:
        _check_worker_name(req.worker_name)
        status = req.worker_status
        if status is None:
            status = await fetch_status(client(), req.worker_name, settings.status_timeout)
            if status is None:
                registry.remove(req.worker_name)
                raise ServiceUnavailable(
                    f"could not get the status of worker {req.worker_name}",
                    code=int(ErrorCode.CONTROLLER_WORKER_TIMEOUT),
                )
        registry.register(req.worker_name, status, req.check_heart_beat, req.multimodal)
        log.info("registered worker %s serving %s", req.worker_name, status.model_names)

    @app.post("/receive_heart_beat", dependencies=[Depends(require_secret)])
    async def receive_heart_beat(req: HeartBeatRequest) -> HeartBeatResponse:
        return HeartBeatResponse(exist=registry.heartbeat(req.worker_name, req.queue_length))

    @app.post("/refresh_all_workers")
    async def refresh_all_workers() -> None:
        known = dict(registry.workers)
        statuses = await asyncio.gather(
            *(fetch_status(client(), name, settings.status_timeout) for name in known)
        )
        for (name, old), status in zip(known.items(), statuses, strict=True):
            if status is None:
                registry.remove(name)
            else:
                registry.register(name, status, old.check_heart_beat, old.multimodal)

    @app.post("/list_models")
    async def list_models() -> ListModelsResponse:
        return ListModelsResponse(models=registry.models())

    @app.post("/list_multimodal_models")
    async def list_multimodal_models() -> ListModelsResponse:
        return ListModelsResponse(models=registry.models(multimodal=True))

    @app.post("/list_language_models")
    async def list_language_models() -> ListModelsResponse:
        return ListModelsResponse(models=registry.models(multimodal=False))

    @app.post("/get_worker_address")
    async def get_worker_address(req: GetWorkerAddressRequest) -> GetWorkerAddressResponse:
        return GetWorkerAddressResponse(address=registry.dispatch(req.model))

    @app.post("/worker_get_status")
    async def worker_get_status() -> WorkerStatus:
        return registry.aggregate_status()

    @app.get("/test_connection")
    async def test_connection() -> str:
        return "success"

    @app.post("/worker_generate_stream")
    async def worker_generate_stream(request: Request) -> StreamingResponse:
        try:
            params = await request.json()
        except (ValueError, RecursionError) as exc:  # RecursionError: a body of [[[[... (issue 17)
            raise BadRequest("request body must be a JSON object") from exc
        if not isinstance(params, dict) or not isinstance(params.get("model"), str):
            raise BadRequest("request body must be a JSON object with a string 'model'", param="model")
        where = json_path_of_surrogate(params)
        if where is not None:  # not Unicode: it could not be forwarded to the worker
            raise BadRequest(f"request body has a lone surrogate in the string at {where}")
        address = registry.dispatch(params["model"])
        # Stops relaying (and closes the worker connection) as soon as the client disconnects.
        return ClosingStreamingResponse(_relay(client(), registry, address, params, settings.worker_timeout))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "workers": len(registry.workers), "models": registry.models()}

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        workers_gauge.set(len(registry.workers))
        metrics.queue_depth.set(sum(w.queue_length for w in registry.workers.values()))
        return metrics_response(metrics)

    return app


async def _expiry_loop(registry: Registry, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        for name in registry.expire():
            log.warning("worker %s missed its heartbeats; removed", name)


async def _relay(
    client: httpx.AsyncClient, registry: Registry, address: str, params: dict[str, Any], timeout: float
) -> AsyncIterator[bytes]:
    """Relay the worker's NUL-framed stream frame by frame; on failure one FastChat error frame.

    Only whole frames are relayed, so an error frame never lands inside a half-sent chunk.
    """
    if not address:
        yield frame_chunk(error_chunk(ErrorCode.CONTROLLER_NO_WORKER))
        return
    splitter = NulSplitter()
    try:
        async with client.stream(
            "POST", address + "/worker_generate_stream", json=params, timeout=timeout
        ) as r:
            if r.status_code != 200:
                body = (await r.aread()).decode(errors="replace")[:500]
                code = _status_error_code(r.status_code)
                if code == ErrorCode.CONTROLLER_WORKER_TIMEOUT:
                    registry.remove(address)
                yield frame_chunk(error_chunk(code, f"worker answered HTTP {r.status_code}: {body}"))
                return
            async for piece in r.aiter_bytes():
                for frame in splitter.feed(piece):
                    yield frame + b"\0"
            rest = splitter.rest()
            if rest:
                yield rest + b"\0"
    except httpx.HTTPError as exc:
        registry.remove(address)
        log.warning("worker %s failed (%s); removed from dispatch", address, exc)
        yield frame_chunk(error_chunk(ErrorCode.CONTROLLER_WORKER_TIMEOUT, f"{type(exc).__name__}: {exc}"))


def _status_error_code(status: int) -> int:
    """FastChat code for a worker's non-200 answer; only 5xx means the worker itself failed."""
    if status == 429:
        return ErrorCode.ENGINE_OVERLOADED
    if 400 <= status < 500:
        return ErrorCode.VALIDATION_TYPE_ERROR
    return ErrorCode.CONTROLLER_WORKER_TIMEOUT


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m camel_chat.serve.controller",
        description="Registry and dispatcher of model workers (FastChat controller protocol).",
    )
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, default=21001)
    p.add_argument(
        "--dispatch-method",
        choices=DISPATCH_METHODS,
        default="shortest_queue",
        help="shortest_queue: least queue per unit of speed; lottery: random weighted by speed",
    )
    p.add_argument(
        "--heart-beat-expiration",
        type=float,
        default=float(os.environ.get("FASTCHAT_CONTROLLER_HEART_BEAT_EXPIRATION", 90)),
        help="drop a worker silent for this many seconds (about 3 heartbeat intervals)",
    )
    p.add_argument(
        "--expiry-check-interval", type=float, default=5.0, help="seconds between checks for expired workers"
    )
    p.add_argument(
        "--secret",
        default=os.environ.get("CAMEL_CHAT_CONTROLLER_SECRET"),
        help="require 'Authorization: Bearer SECRET' to register and heartbeat "
        "(default $CAMEL_CHAT_CONTROLLER_SECRET)",
    )
    p.add_argument(
        "--worker-timeout",
        type=float,
        default=float(os.environ.get("FASTCHAT_WORKER_API_TIMEOUT", 100)),
        help="seconds to wait on a worker's generation stream",
    )
    p.add_argument("--ssl", action="store_true", help="serve HTTPS with $SSL_KEYFILE and $SSL_CERTFILE")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.ssl and not (os.environ.get("SSL_KEYFILE") and os.environ.get("SSL_CERTFILE")):
        parser.error("--ssl needs $SSL_KEYFILE and $SSL_CERTFILE")
    import uvicorn

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = ControllerSettings(
        host=args.host,
        port=args.port,
        dispatch_method=args.dispatch_method,
        heart_beat_expiration=args.heart_beat_expiration,
        expiry_check_interval=args.expiry_check_interval,
        secret=args.secret or None,
        worker_timeout=args.worker_timeout,
    )
    ssl: dict[str, Any] = {}
    if args.ssl:
        ssl = {"ssl_keyfile": os.environ["SSL_KEYFILE"], "ssl_certfile": os.environ["SSL_CERTFILE"]}
    uvicorn.run(make_app(settings), host=args.host, port=args.port, log_level=args.log_level, **ssl)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
