"""Where an OpenAI request goes: the controller (cached), the workers (pooled), admission control.

The API server's cost per request is what FastChat's was not (anchors/serving.md §2.2): one pooled
`httpx.AsyncClient` for every call, the model list cached for `model_list_ttl` seconds, each
model's worker address for `address_ttl` seconds (single-flight, so a burst of requests asks the
controller once), and both forgotten as soon as a worker fails. In the steady state a request
costs at most one hop to the controller, usually none. When the controller is down, the last
known address is used rather than failing every request.

    backend = Backend(controller_address, client, model_list_ttl=5.0, address_ttl=1.0)
    model, address = await backend.route("Vicuna-7B")      # canonical name (case-insensitive)
    stream = await backend.open_stream(model, payload)     # a primed WorkerStream; errors raise
    models = await backend.list_models()

`Admission` bounds the sequences in flight (`--max-queue`): above it, 429 with `Retry-After`
instead of FastChat's unbounded wait. Errors are the `camel_chat.serve.errors` tree; nothing here
imports torch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from pydantic import ValidationError

from camel_chat.json_scan import json_path_of_surrogate
from camel_chat.serve.disconnect import finish
from camel_chat.serve.errors import (
    BadGateway,
    BadRequest,
    InternalError,
    NotFound,
    RateLimited,
    ServeError,
    ServiceUnavailable,
    from_error_code,
)
from camel_chat.serve.protocol import SERVER_ERROR_MSG, GenerateChunk, aiter_frames

T = TypeVar("T")


class WorkerUnreachable(ServiceUnavailable):
    """The worker could not be reached at all (nothing was generated, so a retry is safe)."""


def worker_error_message(text: str) -> str:
    """The useful part of a FastChat error chunk's text (which starts with the generic banner)."""
    if not text.startswith(SERVER_ERROR_MSG):
        return text
    rest = text[len(SERVER_ERROR_MSG) :].strip()
    if rest.startswith("(") and rest.endswith(")"):
        rest = rest[1:-1]
    return rest or "the worker failed"


def chunk_error(chunk: dict[str, Any]) -> ServeError | None:
    """The exception a worker chunk carries (`error_code` != 0), else None."""
    code = int(chunk.get("error_code") or 0)
    if code == 0:
        return None
    return from_error_code(code, worker_error_message(str(chunk.get("text", ""))))


def _retry_after(response: httpx.Response, default: float = 1.0) -> float:
    try:
        return max(0.0, float(response.headers.get("retry-after", default)))
    except ValueError:
        return default


def http_error(response: httpx.Response, body: bytes, where: str) -> ServeError:
    """Map a worker/controller HTTP error answer to our exception (OpenAI or FastChat body)."""
    message = f"{where} answered HTTP {response.status_code}"
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and err.get("message"):
            message = str(err["message"])
        elif data.get("error_code"):
            return from_error_code(int(data["error_code"]), worker_error_message(str(data.get("text", ""))))
        elif isinstance(data.get("detail"), str):
            message = data["detail"]
    status = response.status_code
    if status == 429:
        return RateLimited(message, retry_after=_retry_after(response))
    if status == 404:
        return NotFound(message)
    if 400 <= status < 500:
        return BadRequest(message)
    if status == 503:
        return ServiceUnavailable(message, retry_after=_retry_after(response))
    return InternalError(message)


def worker_json(raw: bytes, what: str) -> Any:
    """A worker's JSON (a stream frame or a whole answer), strictly UTF-8 and free of lone
    surrogates (which could not be sent on to the client): else the worker's fault, a 502."""
    try:
        value = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError too
        raise BadGateway(f"the worker sent a malformed {what}") from exc
    if json_path_of_surrogate(value) is not None:
        raise BadGateway(f"the worker sent a malformed {what} (a lone surrogate)")
    return value


class WorkerStream:
    """One worker generation: NUL-framed cumulative chunks, read one at a time.

    `prime()` reads the first chunk so a failure before any output (prompt over the context,
    worker overloaded) becomes a proper HTTP error rather than a 200 stream holding an error.
    `aclose()` drops the connection, which is how the worker learns to cancel the generation.
    """

    def __init__(self, response: httpx.Response, address: str, on_failure: Callable[[str], None]) -> None:
        self.address = address
        self._response = response
        self._frames = aiter_frames(response.aiter_bytes())
        self._on_failure = on_failure
        self._pending: list[dict[str, Any]] = []
        self.closed = False

    async def prime(self) -> None:
        chunk = await self.next()
        if chunk is not None:
            self._pending.append(chunk)

    async def next(self) -> dict[str, Any] | None:
        """The next chunk, None at the end; raises the chunk's error or a lost connection."""
        if self._pending:
            return self._pending.pop(0)
        try:
            frame = await self._frames.__anext__()
        except StopAsyncIteration:
            return None
        except httpx.HTTPError as exc:
            if self.closed:  # we dropped the connection (the client left): not a worker failure
                return None
            self._on_failure(self.address)
            raise ServiceUnavailable(f"the worker failed while generating ({type(exc).__name__})") from exc
        chunk = worker_json(frame, "chunk")
        try:  # the shape the stream code relies on (wrong types there would be a 500 later)
            GenerateChunk.model_validate(chunk)
        except ValidationError as exc:
            raise BadGateway("the worker sent a malformed chunk") from exc
        error = chunk_error(chunk)
        if error is not None:
            raise error
        return chunk

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[dict[str, Any]]:
        while (chunk := await self.next()) is not None:
            yield chunk

    async def aclose(self) -> None:
        """Drop the connection (the worker then cancels the generation and frees its slot), to
        the end even if the caller is being cancelled (see `disconnect.py`)."""
        if self.closed:
            return
        self.closed = True
        try:
            await finish(self._response.aclose())
        finally:
            # RuntimeError: still being iterated by a reader that is being cancelled.
            with contextlib.suppress(RuntimeError):
                await self._frames.aclose()


@dataclass
class _Entry:
    value: Any
    at: float


@dataclass
class Backend:
    """The controller and workers as seen from the API server (see the module docstring)."""

    controller_address: str
    client: httpx.AsyncClient
    model_list_ttl: float = 5.0
    address_ttl: float = 1.0
    control_timeout: float = 5.0
    worker_timeout: float = 100.0
    clock: Callable[[], float] = time.monotonic
    _models: _Entry | None = None
    _addresses: dict[str, _Entry] = field(default_factory=dict)
    _context: dict[tuple[str, str], int] = field(default_factory=dict)
    _templates: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    _pending: dict[Any, asyncio.Future[Any]] = field(default_factory=dict)
    controller_calls: int = 0  # for tests and /health: how often we actually asked the controller

    def __post_init__(self) -> None:
        self.controller_address = self.controller_address.rstrip("/")

    # ------------------------------------------------------------------ controller (cached)

    async def _controller(self, path: str, payload: dict[str, Any] | None = None) -> Any:
        self.controller_calls += 1
        url = f"{self.controller_address}{path}"
        try:
            response = await self.client.post(url, json=payload, timeout=self.control_timeout)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(
                f"the controller at {self.controller_address} is unreachable ({type(exc).__name__})"
            ) from exc
        if response.status_code != 200:
            raise ServiceUnavailable(f"the controller answered HTTP {response.status_code} to {path}")
        try:
            return response.json()
        except ValueError as exc:
            raise ServiceUnavailable(f"the controller sent a malformed answer to {path}") from exc

    async def _once(self, key: Any, factory: Callable[[], Awaitable[T]]) -> T:
        """Run `factory` once for concurrent callers with the same key (single flight)."""
        future = self._pending.get(key)
        if future is None:
            future = asyncio.ensure_future(factory())
            self._pending[key] = future

            def _done(f: asyncio.Future[Any], key: Any = key) -> None:
                self._pending.pop(key, None)
                if not f.cancelled():
                    f.exception()  # retrieved: a failure is raised to the waiters, never logged as lost

            future.add_done_callback(_done)
        return await asyncio.shield(future)

    def _fresh(self, entry: _Entry | None, ttl: float) -> bool:
        return entry is not None and self.clock() - entry.at < ttl

    async def list_models(self, *, force: bool = False) -> list[str]:
        """The controller's model names, cached for `model_list_ttl` seconds."""
        if not force and self._fresh(self._models, self.model_list_ttl):
            assert self._models is not None
            return list(self._models.value)

        async def fetch() -> list[str]:
            data = await self._controller("/list_models")
            models = sorted({str(m) for m in (data or {}).get("models", [])})
            self._models = _Entry(models, self.clock())
            return models

        return list(await self._once("models", fetch))

    def _match(self, model: str, names: list[str]) -> str | None:
        if model in names:
            return model
        folded = model.casefold()
        return next((n for n in names if n.casefold() == folded), None)

    async def _ask_address(self, model: str) -> str:
        async def fetch() -> str:
            data = await self._controller("/get_worker_address", {"model": model})
            address = str((data or {}).get("address") or "").rstrip("/")
            if address:
                self._addresses[model] = _Entry(address, self.clock())
            return address

        return await self._once(("address", model), fetch)

    async def route(self, requested: str) -> tuple[str, str]:
        """`(canonical model name, worker address)` for a requested model id.

        404 when no registered model matches (case-insensitively), 503 when it matches but no
        worker is available or the controller cannot be reached and nothing is cached.
        """
        known = self._models.value if self._models is not None else []
        model = self._match(requested, known) or requested
        entry = self._addresses.get(model)
        if self._fresh(entry, self.address_ttl):
            assert entry is not None
            return model, entry.value
        try:
            address = await self._ask_address(model)
        except ServiceUnavailable:
            if entry is not None:  # controller down: the last known worker beats failing outright
                return model, entry.value
            raise
        if address:
            return model, address
        names = await self.list_models(force=True)
        match = self._match(requested, names)
        if match is None:
            if not names:
                raise ServiceUnavailable("no worker is registered at the controller yet; retry shortly")
            raise NotFound(
                f"The model `{requested}` does not exist. Available: {', '.join(names)}", param="model"
            )
        if match != model:
            address = await self._ask_address(match)
            if address:
                return match, address
        raise ServiceUnavailable(f"no worker is serving `{match}` right now; retry shortly")

    def forget_route(self, address: str) -> None:
        """Ask the controller again next time instead of using the cached route to `address`."""
        for model in [m for m, e in self._addresses.items() if e.value == address]:
            del self._addresses[model]

    def forget_worker(self, address: str) -> None:
        """Drop every cached route to a worker that just failed (the next request asks again)."""
        self.forget_route(address)
        for key in [k for k in self._context if k[0] == address]:
            del self._context[key]
        for key in [k for k in self._templates if k[0] == address]:
            del self._templates[key]
        self._models = None

    # ------------------------------------------------------------------ workers

    async def _post_worker(self, address: str, path: str, payload: dict[str, Any]) -> Any:
        try:
            response = await self.client.post(f"{address}{path}", json=payload, timeout=self.worker_timeout)
        except httpx.HTTPError as exc:
            self.forget_worker(address)
            raise WorkerUnreachable(f"the worker at {address} is unreachable ({type(exc).__name__})") from exc
        if response.status_code != 200:
            if response.status_code >= 500:
                self.forget_worker(address)
            raise http_error(response, response.content, "the worker")
        data = worker_json(response.content, "answer")
        if isinstance(data, dict) and (error := chunk_error(data)) is not None:
            raise error
        return data

    async def context_length(self, model: str, address: str) -> int | None:
        """The worker's context length for `model` (`/model_details`, cached per worker)."""
        key = (address, model)
        if key not in self._context:
            try:
                data = await self._post_worker(address, "/model_details", {"model": model})
            except ServeError:
                return None
            value = (data or {}).get("context_length") if isinstance(data, dict) else None
            if not isinstance(value, int):
                return None
            self._context[key] = value
        return self._context[key]

    async def template_info(self, requested: str) -> dict[str, Any] | None:
        """The chat template the worker serving `requested` uses, from `/worker_get_conv_template`
        (cached per worker): `{"conv_template": name, "conv_template_source": ...}`. None when no
        worker answers within the control timeout (model listings must not wait on a busy worker)."""
        try:
            model, address = await self.route(requested)
        except ServeError:
            return None
        key = (address, model)
        if key not in self._templates:
            try:
                response = await self.client.post(
                    f"{address}/worker_get_conv_template", json={"model": model}, timeout=self.control_timeout
                )
                conv = response.json().get("conv") if response.status_code == 200 else None
            except (httpx.HTTPError, ValueError, AttributeError):
                return None
            if not isinstance(conv, dict):
                return None
            self._templates[key] = {
                # Ours send "template" (None: the tokenizer's chat_template); FastChat's only "name".
                "conv_template": conv.get("template") if "template" in conv else conv.get("name"),
                "conv_template_source": conv.get("template_source"),
            }
        return dict(self._templates[key])

    async def _open(self, address: str, payload: dict[str, Any]) -> WorkerStream:
        request = self.client.build_request(
            "POST", f"{address}/worker_generate_stream", json=payload, timeout=self.worker_timeout
        )
        try:
            response = await self.client.send(request, stream=True)
        except httpx.HTTPError as exc:
            self.forget_worker(address)
            raise WorkerUnreachable(f"the worker at {address} is unreachable ({type(exc).__name__})") from exc
        if response.status_code != 200:
            body = await response.aread()
            await response.aclose()
            if response.status_code >= 500:
                self.forget_worker(address)
            raise http_error(response, body, "the worker")
        stream = WorkerStream(response, address, self.forget_worker)
        try:
            await stream.prime()
        except BaseException:
            await stream.aclose()
            raise
        return stream

    async def open_stream(self, requested: str, payload: dict[str, Any]) -> tuple[str, WorkerStream]:
        """Route `requested`, start `/worker_generate_stream` and read its first chunk.

        `payload["model"]` is set to the canonical name. A worker that cannot be reached at all is
        forgotten and the request goes once more to whatever the controller answers next; so does
        one that is full (429): the controller's shortest queue may know a worker with room, and
        only when that one is full too does the client get the 429.
        """
        for attempt in range(2):
            model, address = await self.route(requested)
            payload["model"] = model
            try:
                return model, await self._open(address, payload)
            except WorkerUnreachable:
                if attempt:
                    raise
            except RateLimited:
                if attempt:
                    raise
                self.forget_route(address)
        raise AssertionError("unreachable")

    async def embed(self, requested: str, texts: list[str], batch_size: int) -> tuple[str, list[Any], int]:
        """`(model, vectors, tokens)` from `/worker_get_embeddings`, `batch_size` inputs per call."""
        model, address = await self.route(requested)
        vectors: list[Any] = []
        tokens = 0
        for start in range(0, len(texts), batch_size):
            payload = {"model": model, "input": texts[start : start + batch_size]}
            data = await self._post_worker(address, "/worker_get_embeddings", payload)
            if not isinstance(data, dict) or not isinstance(data.get("embedding"), list):
                raise BadGateway("the worker sent no embeddings")
            vectors.extend(data["embedding"])
            tokens += int(data.get("token_num") or 0)
        if len(vectors) != len(texts):
            raise BadGateway("the worker sent a different number of embeddings than inputs")
        return model, vectors, tokens


@dataclass
class Admission:
    """Bounds the worker sequences in flight through this server; above `limit` -> 429."""

    limit: int
    retry_after: float = 1.0
    on_change: Callable[[int], None] | None = None
    in_flight: int = 0

    def acquire(self, k: int = 1) -> None:
        if k > self.limit:
            raise BadRequest(f"this request needs {k} sequences; the server allows {self.limit} at once")
        if self.in_flight + k > self.limit:
            raise RateLimited(
                f"the server is at capacity ({self.in_flight} of {self.limit} sequences in flight); "
                "retry shortly",
                retry_after=self.retry_after,
            )
        self.in_flight += k
        if self.on_change is not None:
            self.on_change(self.in_flight)

    def release(self, k: int = 1) -> None:
        self.in_flight = max(0, self.in_flight - k)
        if self.on_change is not None:
            self.on_change(self.in_flight)
