"""The worker app: FastChat's worker endpoints over any `Engine` (transformers or vLLM).

    app = make_app(engine, WorkerSettings(controller_address=..., worker_address=...))

Endpoints (all POST with JSON unless noted): /worker_generate_stream (NUL-delimited JSON chunks
with the cumulative text), /worker_generate (the last chunk), /worker_get_embeddings,
/worker_get_status, /count_token, /model_details (plus, our extension, the sampling defaults the
checkpoint's generation_config.json sets), /worker_get_conv_template, the legacy
/worker_generate_completion(_stream), GET /health and GET /metrics (Prometheus).

What the app owns: the concurrency limit (a slot per generate/embedding request, taken before the
answer starts and released however it ends, so an error or a client that goes away never leaks
one; at most `max_waiting` wait for a slot, more get 429 + Retry-After), cancelling generation
when the client disconnects (streaming and not, through `disconnect.py`), usage in the
metrics, and the registration + heartbeat loop in the lifespan (`registration.py`). Errors
travel as FastChat error chunks (HTTP 200, `error_code` != 0): a client error's text is its
message (e.g. the context limit), a server error's is FastChat's banner plus the detail. The
commands are `model_worker` and `vllm_worker`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from camel_chat.serve.disconnect import (
    CLIENT_CLOSED,
    ClientGone,
    ClosingStreamingResponse,
    finish,
    until_disconnect,
)
from camel_chat.serve.engine import Engine, error_code_of
from camel_chat.serve.errors import RateLimited, ServeError, add_error_handlers
from camel_chat.serve.metrics import Metrics, MetricsMiddleware, make_metrics, metrics_response
from camel_chat.serve.protocol import (
    CheckpointSampling,
    CountTokenRequest,
    CountTokenResponse,
    EmbeddingsRequest,
    EmbeddingsResponse,
    GenerateChunk,
    GenerateRequest,
    ModelDetailsResponse,
    WorkerStatus,
    error_chunk,
    frame_chunk,
)
from camel_chat.serve.registration import RegistrationState, keep_registered

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 16
#: Requests allowed to wait for a slot, per slot, unless --max-waiting says otherwise: a waiter then
#: waits for at most ~4 generations, and a burst beyond that is told to retry (429) at once.
DEFAULT_WAITING_PER_SLOT = 4
DEFAULT_HEART_BEAT_INTERVAL = float(os.environ.get("FASTCHAT_WORKER_HEART_BEAT_INTERVAL", "5"))


@dataclass(frozen=True)
class WorkerSettings:
    worker_address: str = "http://localhost:21002"
    controller_address: str = "http://localhost:21001"
    limit_worker_concurrency: int = DEFAULT_LIMIT
    #: requests that may wait for a slot before more are refused with 429 (None: 4 x the limit)
    max_waiting: int | None = None
    register: bool = True
    heart_beat_interval: float = DEFAULT_HEART_BEAT_INTERVAL
    retry_interval: float = 5.0
    controller_secret: str | None = None


class ConcurrencyLimiter:
    """An asyncio semaphore that knows how many hold a slot and how many wait for one, and that
    refuses a new waiter (429 + Retry-After) once `max_waiting` already wait (None: unbounded)."""

    def __init__(self, limit: int, max_waiting: int | None = None, retry_after: float = 1.0) -> None:
        self.limit = limit
        self.max_waiting = max_waiting
        self.retry_after = retry_after
        self.in_use = 0
        self.waiting = 0
        self._semaphore = asyncio.Semaphore(limit)

    @property
    def queue_length(self) -> int:
        """FastChat's queue length: slots in use plus requests waiting for one."""
        return self.in_use + self.waiting

    async def acquire(self) -> None:
        # Checked before the first await, so concurrent callers cannot all slip past the bound.
        if self.max_waiting is not None and self._semaphore.locked() and self.waiting >= self.max_waiting:
            raise RateLimited(
                f"the worker is at capacity ({self.in_use} running, {self.waiting} waiting); retry shortly",
                retry_after=self.retry_after,
            )
        self.waiting += 1
        try:
            await self._semaphore.acquire()
        finally:
            self.waiting -= 1
        self.in_use += 1

    def release(self) -> None:
        self.in_use -= 1
        self._semaphore.release()


def _failure_chunk(exc: BaseException) -> GenerateChunk:
    """A client error's message as is; anything else as FastChat's server error text + detail."""
    if isinstance(exc, ServeError) and exc.status < 500:
        return GenerateChunk(text=exc.message, error_code=error_code_of(exc))
    if not isinstance(exc, ServeError):
        log.exception("generation failed", exc_info=exc)
    detail = exc.message if isinstance(exc, ServeError) else f"{type(exc).__name__}: {exc}"
    return error_chunk(error_code_of(exc), detail)


class _Worker:
    """The app's state: engine, limiter, metrics, registration."""

    def __init__(self, engine: Engine, settings: WorkerSettings, metrics: Metrics) -> None:
        self.engine = engine
        self.settings = settings
        self.metrics = metrics
        limit = settings.limit_worker_concurrency
        waiting = settings.max_waiting
        if waiting is None:
            waiting = DEFAULT_WAITING_PER_SLOT * limit
        self.limiter = ConcurrencyLimiter(limit, max_waiting=waiting)
        self.registration = RegistrationState()

    def status(self) -> WorkerStatus:
        return WorkerStatus(
            model_names=self.engine.model_names, speed=1, queue_length=self.limiter.queue_length
        )

    async def acquire(self) -> None:
        await self.limiter.acquire()
        self.metrics.queue_depth.set(self.limiter.queue_length)

    def release(self) -> None:
        self.limiter.release()
        self.metrics.queue_depth.set(self.limiter.queue_length)

    async def chunks(self, request: GenerateRequest) -> AsyncIterator[GenerateChunk]:
        """The engine's chunks (the caller holds a slot); a failure becomes a final error chunk."""
        stream = self.engine.generate(request)
        last: GenerateChunk | None = None
        try:
            async for chunk in stream:
                last = chunk
                yield chunk
        except Exception as exc:
            yield _failure_chunk(exc)
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
            if last is not None and last.usage is not None:
                self.metrics.add_tokens(last.usage.prompt_tokens, last.usage.completion_tokens)

    async def frames(self, request: GenerateRequest) -> AsyncIterator[bytes]:
        chunks = self.chunks(request)
        try:
            async for chunk in chunks:
                yield frame_chunk(chunk)
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]

    async def final_chunk(self, request: GenerateRequest) -> GenerateChunk:
        """The last chunk, generated under a slot (waited for, or 429 when too many wait)."""
        await self.acquire()
        chunks = self.chunks(request)
        last = GenerateChunk(text="")
        try:
            async for chunk in chunks:
                last = chunk
        finally:
            await finish(chunks.aclose())  # type: ignore[attr-defined]
            self.release()
        return last


def make_app(
    engine: Engine,
    settings: WorkerSettings | None = None,
    *,
    http_client: httpx.AsyncClient | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> FastAPI:
    """The worker app over `engine`. `http_client` (for calls to the controller) and `sleep`
    (the heartbeat loop's) are injectable for tests."""
    settings = settings or WorkerSettings()
    metrics = make_metrics("worker")
    worker = _Worker(engine, settings, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = http_client or httpx.AsyncClient(timeout=5.0)
        task = None
        if settings.register:
            task = asyncio.create_task(
                keep_registered(
                    client,
                    settings.controller_address,
                    settings.worker_address,
                    worker.status,
                    state=worker.registration,
                    interval=settings.heart_beat_interval,
                    retry_interval=settings.retry_interval,
                    secret=settings.controller_secret,
                    sleep=sleep,
                ),
                name="camel-chat-worker-heartbeat",
            )
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
            if http_client is None:
                await client.aclose()

    app = FastAPI(title="camel_chat model worker", lifespan=lifespan)
    app.state.worker = worker
    add_error_handlers(app)
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    async def generate_stream(request: Request, body: GenerateRequest) -> Response:
        # The slot is taken before the 200 goes out, so a full worker answers 429 + Retry-After
        # (an HTTP status the API server passes on), and released when the response ends.
        try:
            await until_disconnect(request.receive, worker.acquire())
        except ClientGone:
            return Response(status_code=CLIENT_CLOSED)

        async def release() -> None:
            worker.release()

        return ClosingStreamingResponse(
            worker.frames(body), on_close=release, media_type="application/octet-stream"
        )

    async def generate(request: Request, body: GenerateRequest) -> Response:
        try:
            chunk = await until_disconnect(request.receive, worker.final_chunk(body))
        except ClientGone:
            return Response(status_code=CLIENT_CLOSED)
        return JSONResponse(chunk.model_dump())

    for path in ("/worker_generate_stream", "/worker_generate_completion_stream"):
        app.post(path)(generate_stream)
    for path in ("/worker_generate", "/worker_generate_completion"):
        app.post(path)(generate)

    @app.post("/worker_get_embeddings")
    async def embeddings(body: EmbeddingsRequest) -> Response:
        await worker.acquire()
        try:
            vectors, tokens = await engine.embed(body.input)
        except Exception as exc:
            return JSONResponse(_failure_chunk(exc).model_dump(include={"text", "error_code"}))
        finally:
            worker.release()
        metrics.add_tokens(prompt=tokens)
        if body.encoding_format == "base64":
            encoded = [base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() for v in vectors]
            return JSONResponse(EmbeddingsResponse(embedding=encoded, token_num=tokens).model_dump())
        return JSONResponse(EmbeddingsResponse(embedding=vectors, token_num=tokens).model_dump())

    @app.post("/worker_get_status")
    async def worker_get_status() -> WorkerStatus:
        return worker.status()

    @app.post("/count_token")
    async def count_token(body: CountTokenRequest) -> CountTokenResponse:
        return CountTokenResponse(count=await asyncio.to_thread(engine.count_tokens, body.prompt))

    @app.post("/model_details")
    async def model_details() -> ModelDetailsResponse:
        sampling = CheckpointSampling(**engine.sampling_defaults.configured_values())
        return ModelDetailsResponse(context_length=engine.context_length, sampling=sampling)

    @app.post("/worker_get_conv_template")
    async def worker_get_conv_template() -> dict[str, Any]:
        return engine.conv_template()

    @app.get("/health")
    async def health() -> dict[str, Any]:
        registration = worker.registration
        return {
            "status": "ok",
            "model_names": engine.model_names,
            "queue_length": worker.limiter.queue_length,
            "limit": worker.limiter.limit,
            "registered": registration.registered if settings.register else None,
            "engine": engine.stats(),
        }

    @app.get("/metrics")
    async def prometheus() -> Response:
        metrics.queue_depth.set(worker.limiter.queue_length)
        return metrics_response(metrics)

    return app
