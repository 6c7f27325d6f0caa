"""The OpenAI endpoints: `/v1/models`, `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`.

Each handler parses its body leniently (protocol.py), takes admission slots (429 above
`--max-queue`), routes through `Backend` (cached controller, pooled workers) and answers in the
OpenAI shape (openai_stream.py). Chat requests go to the worker as `messages`, so the worker
renders them with its own template and reports exact usage; completions send the raw prompt, or
its token ids as `prompt_token_ids` (used verbatim; with `echo` + `logprobs` the worker scores
every prompt token, which is what evaluation harnesses read).
Streams are `disconnect.ClosingStreamingResponse`s: whatever ends them (done, error, client
gone), their worker connections are closed and their admission slots released exactly once.
Non-streaming requests are cancelled too when the client disconnects (`until_disconnect`).

`router` is mounted by `openai_api_server.make_app`; the app state it needs is `backend`,
`admission`, `settings` and `metrics`. `bodies` holds the model each POST parses, which
`make_app` puts into the OpenAPI document (openapi_doc.py).
"""

from __future__ import annotations

import array
import asyncio
import base64
import contextlib
import json
import sys
import time
import uuid
from collections.abc import AsyncGenerator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from camel_chat.json_scan import json_path_of_surrogate
from camel_chat.serve.disconnect import (
    CLIENT_CLOSED,
    ClientGone,
    ClosingStreamingResponse,
    finish,
    until_disconnect,
)
from camel_chat.serve.errors import BadRequest, NotFound, ServeError
from camel_chat.serve.openai_backend import Admission, Backend, WorkerStream
from camel_chat.serve.openai_stream import (
    Choice,
    StreamShape,
    chat_events,
    chat_response,
    close_all,
    collect,
    completion_events,
    completion_response,
)
from camel_chat.serve.openapi_doc import BodyModels
from camel_chat.serve.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    GenerateRequest,
    WorkerMessage,
)

router = APIRouter()
bodies = BodyModels()  # the models the handlers below parse their bodies with, for the OpenAPI document
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def read_json(request: Request) -> dict[str, Any]:
    """The body as a JSON object (any content type: some clients send JSON as form data)."""
    raw = await request.body()
    try:
        data = json.loads(raw or b"null")
    except (ValueError, RecursionError) as exc:  # RecursionError: a body of [[[[... (issue 17)
        raise BadRequest("the request body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object")
    if b"\\u" in raw or b"\xed" in raw:  # only then can a string hold a lone surrogate
        where = json_path_of_surrogate(data)
        if where is not None:  # not Unicode: it could not even be forwarded to a worker
            raise BadRequest(f"the request body has a lone surrogate in the string at {where}")
    return data


def _state(request: Request) -> tuple[Backend, Admission, Any]:
    state = request.app.state
    return state.backend, state.admission, state.settings


def _sampling(req: ChatCompletionRequest | CompletionRequest, max_new_tokens: int) -> dict[str, Any]:
    return {
        "temperature": req.temperature,
        "top_p": req.top_p,
        "top_k": req.top_k,
        "repetition_penalty": req.repetition_penalty,
        "presence_penalty": req.presence_penalty,
        "frequency_penalty": req.frequency_penalty,
        "max_new_tokens": max_new_tokens,
        "stop": req.stop_list() or None,
    }


def _worker_payload(fields: dict[str, Any], seed: int | None, index: int) -> dict[str, Any]:
    # Choices of one request must differ even with a seed: choice i samples with seed + i.
    choice_seed = None if seed is None else seed + index
    return GenerateRequest(**fields, seed=choice_seed, n=1).model_dump(exclude_none=True)


async def _open_choices(
    backend: Backend, requested: str, payloads: list[tuple[int, dict[str, Any]]]
) -> tuple[str, list[Choice]]:
    """Start every choice's worker stream concurrently. The first failure cancels the opens still
    under way and closes the streams already open, then raises: a worker that refuses choice 81
    with 429 at once must not make the client wait (and the worker generate) until choices 1-80
    have all started. Cancelled the same way if this request is."""
    tasks = [asyncio.ensure_future(backend.open_stream(requested, payload)) for _, payload in payloads]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except BaseException:
        await finish(_abandon(tasks))
        raise
    # Every task is done now, or one of them failed (only _abandon below cancels any).
    failed = next((t for t in tasks if t.done() and not t.cancelled() and t.exception() is not None), None)
    if failed is not None:
        await finish(_abandon(tasks))
        raise failed.exception()  # type: ignore[misc]
    results = [t.result() for t in tasks]
    choices = [
        Choice(index=i, stream=stream, prompt_index=prompt_index)
        for i, ((prompt_index, _), (_model, stream)) in enumerate(zip(payloads, results, strict=True))
    ]
    return results[0][0], choices


async def _abandon(tasks: list[asyncio.Future[tuple[str, WorkerStream]]]) -> None:
    """Cancel the opens still running and close every stream that did open."""
    for task in tasks:
        task.cancel()  # a no-op for those already done
    for result in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(result, tuple):
            with contextlib.suppress(Exception):  # a broken connection is as closed as it gets
                await result[1].aclose()


async def _max_new_tokens(backend: Backend, requested: str, asked: int | None) -> int:
    """An explicit limit, else the model's context length (the worker caps it at context − prompt)."""
    if asked is not None:
        return asked
    model, address = await backend.route(requested)
    return await backend.context_length(model, address) or GenerateRequest().max_new_tokens


async def _generate(
    request: Request,
    requested: str,
    payloads: list[tuple[int, dict[str, Any]]],
    stream: bool,
    respond: Callable[[str, list[Choice]], dict[str, Any]],
    events: Callable[[StreamShape, list[Choice]], AsyncGenerator[bytes, None]],
    shape: Callable[[str], StreamShape],
) -> Response:
    """Admission, worker streams, then a JSON body or an SSE stream; slots released exactly once."""
    backend, admission, _settings = _state(request)
    metrics = request.app.state.metrics
    slots = len(payloads)
    admission.acquire(slots)
    released = False

    async def release(choices: list[Choice], usage: dict[str, int] | None) -> None:
        nonlocal released
        if released:
            return
        released = True
        await close_all(choices)
        admission.release(slots)
        if usage:
            metrics.add_tokens(usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0))

    choices: list[Choice] = []
    try:
        model, choices = await _open_choices(backend, requested, payloads)
        if not stream:
            try:
                await until_disconnect(request.receive, collect(choices))
            except ClientGone:
                await release(choices, None)
                return Response(status_code=CLIENT_CLOSED)
            body = respond(model, choices)
            await release(choices, body["usage"])
            return JSONResponse(body, headers={"x-request-id": body["id"]})
    except BaseException:
        await release(choices, None)
        raise
    stream_shape = shape(model)
    body_iter = events(stream_shape, choices)
    headers = {**SSE_HEADERS, "x-request-id": stream_shape.rid}

    async def on_close() -> None:  # the response closed body_iter first
        await release(choices, stream_shape.usage)

    return ClosingStreamingResponse(body_iter, on_close, media_type="text/event-stream", headers=headers)


def _rid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


@router.post("/v1/chat/completions", openapi_extra=bodies.body(ChatCompletionRequest))
async def chat_completions(request: Request) -> Response:
    req = ChatCompletionRequest.model_validate(await read_json(request))
    _backend, _admission, settings = _state(request)
    if any(m.has_non_text_parts() for m in req.messages):
        raise BadRequest("only text content parts are supported by this server", param="messages")
    messages = [WorkerMessage(role=m.role, content=m.text()) for m in req.messages]
    max_new = await _max_new_tokens(request.app.state.backend, req.model, req.requested_max_tokens())
    top = (req.top_logprobs or 0) if req.logprobs else None
    fields = {**_sampling(req, max_new), "prompt": "", "messages": messages, "echo": False, "logprobs": top}
    payloads = [(0, _worker_payload(fields, req.seed, i)) for i in range(req.n)]
    rid, created = _rid("chatcmpl"), int(time.time())
    return await _generate(
        request,
        req.model,
        payloads,
        req.stream,
        lambda model, choices: chat_response(rid, created, model, choices, top),
        chat_events,
        lambda model: StreamShape(
            rid, created, model, req.include_usage(), settings.keepalive, logprobs_top=top
        ),
    )


def _text_inputs(value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    if isinstance(value, list) and not value:
        raise BadRequest(f"`{what}` must not be empty", param=what)
    raise BadRequest(f"`{what}` must be text: token-id input is not supported by this server", param=what)


def _completion_prompts(value: Any) -> list[dict[str, Any]]:
    """The worker fields of each prompt: a string, strings, token ids, or lists of token ids
    (OpenAI's four forms); ids travel as `prompt_token_ids` and are used verbatim."""
    if isinstance(value, list) and not value:
        raise BadRequest("`prompt` must not be empty", param="prompt")
    if isinstance(value, list) and all(isinstance(v, int) for v in value):
        return [{"prompt": "", "prompt_token_ids": list(value)}]
    if isinstance(value, list) and all(isinstance(v, list) for v in value):
        if any(not v for v in value):
            raise BadRequest("a token-id prompt must not be empty", param="prompt")
        return [{"prompt": "", "prompt_token_ids": list(v)} for v in value]
    return [{"prompt": p} for p in _text_inputs(value, "prompt")]


@router.post("/v1/completions", openapi_extra=bodies.body(CompletionRequest))
async def completions(request: Request) -> Response:
    req = CompletionRequest.model_validate(await read_json(request))
    _backend, _admission, settings = _state(request)
    prompts = _completion_prompts(req.prompt)
    if req.max_tokens == 0 and not req.echo:
        raise BadRequest("max_tokens 0 is only allowed with echo (to score the prompt)", param="max_tokens")
    max_new = await _max_new_tokens(request.app.state.backend, req.model, req.max_tokens)
    payloads = []
    for p, prompt in enumerate(prompts):
        fields = {**_sampling(req, max_new), **prompt, "echo": req.echo, "logprobs": req.logprobs}
        payloads += [(p, _worker_payload(fields, req.seed, i)) for i in range(req.n)]
    wants_logprobs = req.logprobs is not None
    rid, created = _rid("cmpl"), int(time.time())
    return await _generate(
        request,
        req.model,
        payloads,
        req.stream,
        lambda model, choices: completion_response(rid, created, model, choices, wants_logprobs),
        completion_events,
        lambda model: StreamShape(
            rid, created, model, req.include_usage(), settings.keepalive, completion_logprobs=wants_logprobs
        ),
    )


def _base64_floats(vector: list[float]) -> str:
    packed = array.array("f", vector)  # OpenAI's base64 format: little-endian float32
    if sys.byteorder != "little":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode()


async def _embeddings(request: Request, path_model: str | None) -> Response:
    req = EmbeddingRequest.model_validate(await read_json(request))
    backend, admission, settings = _state(request)
    requested = path_model or req.model
    if not requested:
        raise BadRequest("`model` is required", param="model")
    texts = _text_inputs(req.input, "input")
    admission.acquire(1)
    try:
        model, vectors, tokens = await until_disconnect(
            request.receive, backend.embed(requested, texts, settings.embedding_batch_size)
        )
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    finally:
        admission.release(1)
    if req.encoding_format == "base64":
        vectors = [v if isinstance(v, str) else _base64_floats(v) for v in vectors]
    request.app.state.metrics.add_tokens(prompt=tokens)
    return JSONResponse(
        {
            "object": "list",
            "data": [{"object": "embedding", "embedding": v, "index": i} for i, v in enumerate(vectors)],
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


@router.post(
    "/v1/embeddings", openapi_extra=bodies.body(EmbeddingRequest, "`model` is required on this path")
)
async def embeddings(request: Request) -> Response:
    return await _embeddings(request, None)


@router.post(
    "/v1/engines/{model_name}/embeddings",
    openapi_extra=bodies.body(EmbeddingRequest, "`model` may be left out: the path names it"),
)
async def engine_embeddings(request: Request, model_name: str) -> Response:
    return await _embeddings(request, model_name)


def _card(name: str, created: int) -> dict[str, Any]:
    return {
        "id": name,
        "object": "model",
        "created": created,
        "owned_by": "camel_chat",
        "root": name,
        "parent": None,
    }


async def _cards(backend: Backend, names: list[str], created: int) -> list[dict[str, Any]]:
    """Model cards, each with the chat template its worker serves it with (when a worker says)."""
    infos = await asyncio.gather(*(backend.template_info(name) for name in names))
    return [{**_card(name, created), **(info or {})} for name, info in zip(names, infos, strict=True)]


@router.get("/v1/models")
async def list_models(request: Request) -> Response:
    backend, _admission, _settings = _state(request)
    created = request.app.state.started
    return JSONResponse(
        {"object": "list", "data": await _cards(backend, await backend.list_models(), created)}
    )


@router.get("/v1/models/{model_id:path}")
async def get_model(request: Request, model_id: str) -> Response:
    backend, _admission, _settings = _state(request)
    names = await backend.list_models()
    match = next((n for n in names if n == model_id), None) or next(
        (n for n in names if n.casefold() == model_id.casefold()), None
    )
    if match is None:
        raise NotFound(f"The model `{model_id}` does not exist", param="model")
    (card,) = await _cards(backend, [match], request.app.state.started)
    return JSONResponse(card)


__all__ = ["ServeError", "bodies", "router"]
