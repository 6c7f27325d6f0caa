"""protocol.py (lenient bodies, NUL framing), errors.py (status mapping) and metrics.py (per-app registry)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, ValidationError

from camel_chat.serve import errors as E
from camel_chat.serve.metrics import MetricsMiddleware, make_metrics, metrics_response
from camel_chat.serve.protocol import (
    SERVER_ERROR_MSG,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    EmbeddingRequest,
    ErrorResponse,
    GenerateChunk,
    GenerateRequest,
    NulSplitter,
    RegisterWorkerRequest,
    Usage,
    aiter_chunks,
    error_chunk,
    frame_chunk,
)
from camel_chat.serve.sampling import SamplingParams

# ---------------------------------------------------------------- protocol


def test_requests_ignore_unknown_fields_and_treat_null_as_default() -> None:
    req = GenerateRequest.model_validate(
        {"prompt": "hi", "temperature": None, "top_k": None, "stop": None, "images": [], "echo": False}
    )
    # Sampling fields left out or null stay None ("not given"); the engine fills in its defaults.
    assert (req.temperature, req.top_k, req.stop, req.echo) == (None, None, None, False)
    params = SamplingParams.from_request(req)
    assert (params.temperature, params.top_p, params.top_k, params.repetition_penalty) == (1.0, 1.0, -1, 1.0)
    assert req.max_new_tokens == 256 and req.messages is None
    reg = RegisterWorkerRequest.model_validate({"worker_name": "http://w:1", "worker_status": None})
    assert reg.worker_status is None and reg.check_heart_beat is True


def test_generate_request_messages_extension_and_stop_list() -> None:
    req = GenerateRequest.model_validate(
        {"messages": [{"role": "user", "content": "hi"}], "stop": ["</s>", ""]}
    )
    assert req.prompt == "" and req.messages is not None and req.messages[0].role == "user"
    assert req.stop_list() == ["</s>"]
    assert GenerateRequest(stop="###").stop_list() == ["###"]


def test_chat_request_max_completion_tokens_wins_and_usage_flag() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "system", "content": None}, {"role": "user", "content": "x"}],
        "max_tokens": 7,
        "max_completion_tokens": 5,
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [],
        "logit_bias": None,
    }
    req = ChatCompletionRequest.model_validate(body)
    assert req.requested_max_tokens() == 5 and req.include_usage()
    assert req.messages[0].text() == ""
    del body["max_completion_tokens"]
    assert ChatCompletionRequest.model_validate(body).requested_max_tokens() == 7
    assert not ChatCompletionRequest(
        model="m", messages=[ChatMessage(role="user", content="x")]
    ).include_usage()


def test_chat_message_text_parts() -> None:
    msg = ChatMessage(role="user", content=[{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])
    assert msg.text() == "ab" and not msg.has_non_text_parts()
    img = ChatMessage(role="user", content=[{"type": "image_url", "image_url": {"url": "x"}}])
    assert img.has_non_text_parts()


@pytest.mark.parametrize(
    "field,value",
    [
        ("temperature", 2.5),
        ("top_p", 1.5),
        ("n", 0),
        ("max_tokens", 0),
        ("top_k", 0),
        ("top_k", -2),
        ("presence_penalty", 3.0),
    ],
)
def test_chat_request_out_of_range_is_a_validation_error(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user"}], field: value})
    status, body = E.to_openai_error(info.value)
    assert status == 400 and body["error"]["param"] == field


def test_completion_and_embedding_requests() -> None:
    c = CompletionRequest.model_validate({"model": "m", "prompt": [1, 2, 3], "max_tokens": None})
    assert c.max_tokens == 16 and c.echo is False
    e = EmbeddingRequest.model_validate({"input": "x"})
    assert e.encoding_format == "float" and e.model is None


def test_final_usage_chunk_has_empty_choices() -> None:
    chunk = ChatCompletionChunk(id="c", created=1, model="m", usage=Usage(prompt_tokens=1, total_tokens=1))
    assert chunk.model_dump()["choices"] == []


def test_frame_and_error_chunk() -> None:
    frame = frame_chunk(GenerateChunk(text="héllo"))
    assert frame.endswith(b"\0") and json.loads(frame[:-1])["text"] == "héllo"
    err = error_chunk(50005)
    assert err.text == SERVER_ERROR_MSG and err.error_code == 50005
    assert error_chunk(50006, "boom").text.endswith("(boom)")
    assert frame_chunk({"text": "x", "error_code": 0}) == b'{"text": "x", "error_code": 0}\0'


@pytest.mark.parametrize("cut", [1, 2, 3, 7, 1000])
def test_nul_splitter_reassembles_frames_cut_anywhere(cut: int) -> None:
    frames = [frame_chunk({"text": "a" * i}) for i in range(5)]
    data = b"".join(frames) + b"\0" + b'{"text": "tail"}'
    splitter = NulSplitter()
    out: list[bytes] = []
    for i in range(0, len(data), cut):
        out += splitter.feed(data[i : i + cut])
    out.append(splitter.rest())
    assert [json.loads(f)["text"] for f in out] == ["", "a", "aa", "aaa", "aaaa", "tail"]


def test_aiter_chunks() -> None:
    async def pieces():
        yield b'{"text": "a"}\0{"te'
        yield b'xt": "ab"}\0'

    async def collect():
        return [c async for c in aiter_chunks(pieces())]

    assert asyncio.run(collect()) == [{"text": "a"}, {"text": "ab"}]


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "exc,status,type_",
    [
        (E.BadRequest("x"), 400, "invalid_request_error"),
        (E.Unauthorized("x"), 401, "authentication_error"),
        (E.NotFound("x"), 404, "not_found_error"),
        (E.PayloadTooLarge("x"), 413, "invalid_request_error"),
        (E.RateLimited("x"), 429, "rate_limit_error"),
        (E.InternalError("x"), 500, "server_error"),
        (E.ServiceUnavailable("x"), 503, "service_unavailable"),
    ],
)
def test_error_statuses(exc: E.ServeError, status: int, type_: str) -> None:
    got, body = E.to_openai_error(exc)
    assert got == status and exc.status == status
    assert body == {"error": {"message": "x", "type": type_, "param": None, "code": exc.code}}
    ErrorResponse.model_validate(body)


def test_unexpected_exception_is_500_without_details() -> None:
    status, body = E.to_openai_error(RuntimeError("/secret/path leaked"))
    assert status == 500 and "secret" not in body["error"]["message"]


def test_retry_after_header() -> None:
    assert E.error_headers(E.RateLimited("busy", retry_after=0.2)) == {"Retry-After": "1"}
    assert E.error_headers(E.RateLimited("busy", retry_after=2.5)) == {"Retry-After": "3"}
    assert E.error_headers(E.BadRequest("x")) == {}


def test_error_code_values_and_reverse_mapping() -> None:
    assert E.ErrorCode.CONTROLLER_NO_WORKER == 50005 and E.ErrorCode.CONTEXT_OVERFLOW == 40303
    assert isinstance(E.from_error_code(40303, "long"), E.BadRequest)
    assert isinstance(E.from_error_code(40301, "m"), E.NotFound)
    assert isinstance(E.from_error_code(42903, "busy"), E.RateLimited)
    assert isinstance(E.from_error_code(50005, "none"), E.ServiceUnavailable)
    assert isinstance(E.from_error_code(50002, "oom"), E.InternalError)
    assert E.from_error_code(50001, "x").code == 50001


class _Body(BaseModel):
    n: int


def _error_app() -> FastAPI:
    app = FastAPI()
    E.add_error_handlers(app)

    @app.post("/raise/{kind}")
    async def boom(kind: str) -> None:
        if kind == "busy":
            raise E.RateLimited("too many requests", retry_after=3)
        if kind == "model":
            raise E.NotFound("model 'x' does not exist", param="model")
        raise RuntimeError("internal detail")

    @app.post("/body")
    async def body(b: _Body) -> int:
        return b.n

    return app


def test_add_error_handlers() -> None:
    async def go() -> None:
        transport = httpx.ASGITransport(app=_error_app(), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            r = await c.post("/raise/busy")
            assert r.status_code == 429 and r.headers["retry-after"] == "3"
            assert r.json()["error"]["code"] == "rate_limit_exceeded"
            r = await c.post("/raise/model")
            assert r.status_code == 404 and r.json()["error"]["param"] == "model"
            r = await c.post("/raise/other")
            assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
            r = await c.post("/body", json={"n": "not a number"})
            assert r.status_code == 400 and r.json()["error"]["param"] == "n"
            r = await c.get("/nowhere")
            assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"

    asyncio.run(go())


# ---------------------------------------------------------------- metrics


def test_metrics_registries_are_per_app_and_count_routes() -> None:
    async def go() -> bytes:
        m = make_metrics("api")
        make_metrics("api")  # a second app in the same process: no duplicate-timeseries error
        app = FastAPI()

        @app.get("/items/{i}")
        async def item(i: int) -> int:
            return i

        @app.get("/metrics")
        async def metrics():
            return metrics_response(m)

        app.add_middleware(MetricsMiddleware, metrics=m)
        m.add_tokens(prompt=3, completion=4)
        m.queue_depth.set(2)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            for i in range(3):
                assert (await c.get(f"/items/{i}")).status_code == 200
            await c.get("/missing")
            r = await c.get("/metrics")
            assert r.headers["content-type"].startswith("text/plain")
            return r.content

    text = asyncio.run(go()).decode()
    assert 'camel_chat_api_requests_total{endpoint="/items/{i}",status="200"} 3.0' in text
    assert 'camel_chat_api_requests_total{endpoint="unmatched",status="404"} 1.0' in text
    assert 'camel_chat_api_tokens_total{kind="completion"} 4.0' in text
    assert "camel_chat_api_queue_depth 2.0" in text
    assert 'camel_chat_api_request_latency_seconds_count{endpoint="/items/{i}"} 3.0' in text


def test_shared_modules_never_import_torch() -> None:
    code = (
        "import sys\n"
        "import camel_chat.serve.protocol, camel_chat.serve.errors, camel_chat.serve.metrics\n"
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
