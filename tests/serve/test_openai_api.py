"""The OpenAI-compatible API server in-process: a fake controller and fake workers behind one
httpx.MockTransport, the app under test behind httpx.ASGITransport (and the official `openai`
client over the same transport). Shapes, SSE framing, usage, every error status, auth, 429,
mid-stream failure, trailing slashes, control-plane caching, no torch import."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from camel_chat.serve.openai_api_server import Settings, make_app
from camel_chat.serve.protocol import SERVER_ERROR_MSG

pytestmark = pytest.mark.anyio

MODEL = "Tiny-Vicuna"
WORDS = ["Hello", " there", ",", " friend", "!"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class ByteStream(httpx.AsyncByteStream):
    """A worker response body that is produced lazily and notices being closed."""

    def __init__(self, source: AsyncIterator[bytes], on_close: Callable[[], None]) -> None:
        self.source = source
        self.on_close = on_close

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for piece in self.source:
            yield piece

    async def aclose(self) -> None:
        self.on_close()
        await self.source.aclose()  # type: ignore[attr-defined]


def frame(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode() + b"\0"


class FakeCluster:
    """A controller at http://controller and workers at http://worker-*, speaking FastChat."""

    def __init__(self) -> None:
        self.workers: dict[str, list[str]] = {"http://worker-a": [MODEL]}
        self.dead: set[str] = set()
        self.calls: Counter[str] = Counter()
        self.generate: list[dict[str, Any]] = []
        self.closed_streams = 0
        self.controller_up = True
        self.context_length = 64
        # Per-request behaviour knobs.
        self.first_chunk_error: tuple[int, str] | None = None
        self.fail_after: int | None = None  # chunks sent before the connection drops
        self.http_status: int | None = None
        self.delay = 0.0
        self.hang = False
        self.logprobs = False
        self.full: set[str] = set()  # workers answering 429 (the controller routes around them)
        # Streams that may wait for a slot (which never frees); the worker refuses more with 429.
        self.capacity: int | None = None
        self.waiting_opens = 0
        self.abandoned_opens = 0  # waits the API server cancelled

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        base = f"{request.url.scheme}://{request.url.host}"
        path = request.url.path
        self.calls[f"{base}{path}"] += 1
        body = json.loads(request.content or b"null")
        if base == "http://controller":
            if not self.controller_up:
                raise httpx.ConnectError("connection refused", request=request)
            return self.controller(path, body)
        if base in self.dead or base not in self.workers:
            raise httpx.ConnectError("connection refused", request=request)
        return await self.worker(base, path, body)

    def controller(self, path: str, body: Any) -> httpx.Response:
        live = {a: m for a, m in self.workers.items()}
        if path == "/list_models":
            return httpx.Response(200, json={"models": sorted({m for ms in live.values() for m in ms})})
        if path == "/get_worker_address":
            address = next(
                (a for a, ms in live.items() if body["model"] in ms and a not in self.dead | self.full), ""
            )
            if not address:  # like our controller: a dead worker stays routable until it expires
                address = next((a for a, ms in live.items() if body["model"] in ms), "")
            return httpx.Response(200, json={"address": address})
        return httpx.Response(404, json={"detail": "Not Found"})

    async def worker(self, base: str, path: str, body: Any) -> httpx.Response:
        if path == "/model_details":
            return httpx.Response(200, json={"context_length": self.context_length})
        if path == "/worker_get_conv_template" and base == "http://worker-a":  # FastChat's shape
            return httpx.Response(200, json={"conv": {"name": "vicuna_v1.1", "roles": ["USER", "ASSISTANT"]}})
        if path == "/worker_get_embeddings":
            vectors = [[float(len(t)), 0.5, -1.0] for t in body["input"]]
            return httpx.Response(
                200, json={"embedding": vectors, "token_num": sum(len(t) for t in body["input"])}
            )
        if path != "/worker_generate_stream":
            return httpx.Response(404, json={"detail": "Not Found"})
        self.generate.append(body)
        if base in self.full or (self.capacity is not None and self.waiting_opens >= self.capacity):
            err = {"error": {"message": "the worker is at capacity", "type": "rate_limit_error"}}
            return httpx.Response(429, json=err, headers={"Retry-After": "1"})
        if self.capacity is not None:
            self.waiting_opens += 1
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.abandoned_opens += 1
                raise
            finally:
                self.waiting_opens -= 1
        if self.http_status is not None:
            headers = {"Retry-After": "3"} if self.http_status == 429 else {}
            err = {"error": {"message": "worker busy", "type": "x", "param": None, "code": None}}
            return httpx.Response(self.http_status, json=err, headers=headers)

        def closed() -> None:
            self.closed_streams += 1

        return httpx.Response(200, stream=ByteStream(self.chunks(body), closed))

    async def chunks(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        if self.first_chunk_error is not None:
            code, message = self.first_chunk_error
            yield frame({"text": f"{SERVER_ERROR_MSG}\n\n({message})", "error_code": code})
            return
        words = WORDS[: body["max_new_tokens"]]
        prompt_tokens = len(body.get("messages") or []) * 3 + len(body.get("prompt", "").split())
        text = body["prompt"] if body.get("echo") else ""
        for i, word in enumerate(words):
            if self.fail_after is not None and i == self.fail_after:
                raise httpx.ReadError("worker died")
            if self.hang and i == 1:
                await asyncio.sleep(3600)
            if self.delay:
                await asyncio.sleep(self.delay)
            text += word
            last = i == len(words) - 1
            chunk: dict[str, Any] = {"text": text, "error_code": 0}
            chunk["usage"] = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": i + 1,
                "total_tokens": prompt_tokens + i + 1,
            }
            if self.logprobs and body.get("logprobs") is not None:
                chunk["logprobs"] = {
                    "text_offset": list(range(i + 1)),
                    "tokens": words[: i + 1],
                    "token_logprobs": [-0.5] * (i + 1),
                    "top_logprobs": [{w: -0.5, "x": -2.0} for w in words[: i + 1]],
                }
            if last:
                chunk["finish_reason"] = "length" if body["max_new_tokens"] <= len(words) else "stop"
            yield frame(chunk)


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster()


def api(cluster: FakeCluster, **settings: Any) -> tuple[Any, httpx.AsyncClient]:
    app = make_app(
        Settings(controller_address="http://controller", **settings),
        http_client=httpx.AsyncClient(transport=cluster.transport()),
    )
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")
    return app, client


def sse_events(raw: str) -> list[Any]:
    """Parse an SSE body strictly: every event is `data: ...` + blank line; comments skipped."""
    assert raw.endswith("\n\n")
    events = []
    for block in raw.split("\n\n")[:-1]:
        if block.startswith(":"):
            continue
        assert block.startswith("data: "), block
        payload = block[len("data: ") :]
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]}


# ----------------------------------------------------------------------------- shapes


async def test_models_list_and_get(cluster: FakeCluster) -> None:
    cluster.workers["http://worker-b"] = ["other"]
    _app, client = api(cluster)
    r = await client.get("/v1/models")
    assert r.status_code == 200
    data = r.json()
    assert data["object"] == "list"
    assert [m["id"] for m in data["data"]] == [MODEL, "other"]
    assert all(m["object"] == "model" and m["owned_by"] for m in data["data"])
    r = await client.get("/v1/models/tiny-vicuna/")
    assert r.status_code == 200 and r.json()["id"] == MODEL
    r = await client.get("/v1/models/nope")
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"


async def test_model_cards_name_the_workers_template(cluster: FakeCluster) -> None:
    cluster.workers["http://worker-b"] = ["other"]  # answers 404 to /worker_get_conv_template
    _app, client = api(cluster)
    cards = {m["id"]: m for m in (await client.get("/v1/models")).json()["data"]}
    assert cards[MODEL]["conv_template"] == "vicuna_v1.1" and cards[MODEL]["conv_template_source"] is None
    assert "conv_template" not in cards["other"] and cards["other"]["object"] == "model"
    assert (await client.get(f"/v1/models/{MODEL}")).json()["conv_template"] == "vicuna_v1.1"
    assert cluster.calls["http://worker-a/worker_get_conv_template"] == 1  # cached per worker


async def test_chat_completion_shape_and_worker_request(cluster: FakeCluster) -> None:
    _app, client = api(cluster)
    body = {
        **CHAT,
        "model": "tiny-VICUNA",  # case-insensitive
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "assistant", "content": "Hello!"},  # system then assistant: passed on as is
            {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "!"}]},
        ],
        "max_completion_tokens": 3,
        "max_tokens": 99,
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 5,
        "seed": 7,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.25,
        "stop": "###",
        "functions": None,  # nulls accepted
        "some_future_field": {"x": 1},  # unknown fields ignored
        "user": None,
    }
    r = await client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["id"].startswith("chatcmpl-") and data["object"] == "chat.completion"
    assert data["model"] == MODEL and isinstance(data["created"], int)
    assert data["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello there,"},
            "logprobs": None,
            "finish_reason": "length",
        }
    ]
    assert data["usage"] == {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
    sent = cluster.generate[-1]
    assert sent["model"] == MODEL and sent["prompt"] == "" and sent["echo"] is False
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Hi!"},
    ]
    assert sent["max_new_tokens"] == 3  # max_completion_tokens wins over max_tokens
    assert (sent["temperature"], sent["top_p"], sent["top_k"], sent["seed"]) == (0.2, 0.9, 5, 7)
    assert (sent["presence_penalty"], sent["frequency_penalty"], sent["stop"]) == (0.5, 0.25, ["###"])


async def test_chat_without_max_tokens_asks_the_context_length_once(cluster: FakeCluster) -> None:
    _app, client = api(cluster)
    for _ in range(2):
        r = await client.post("/v1/chat/completions", json=CHAT)
        assert r.status_code == 200
        assert cluster.generate[-1]["max_new_tokens"] == cluster.context_length
    assert cluster.calls["http://worker-a/model_details"] == 1


async def test_chat_n_choices_differ_by_seed_and_sum_usage(cluster: FakeCluster) -> None:
    _app, client = api(cluster)
    r = await client.post("/v1/chat/completions", json={**CHAT, "n": 3, "seed": 10, "max_tokens": 2})
    data = r.json()
    assert [c["index"] for c in data["choices"]] == [0, 1, 2]
    assert sorted(g["seed"] for g in cluster.generate) == [10, 11, 12]
    assert data["usage"] == {"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9}


async def test_chat_stream_sse_framing_role_first_and_usage_chunk(cluster: FakeCluster) -> None:
    _app, client = api(cluster)
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    r = await client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "".join(WORDS)
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == "stop" and finishes.count("stop") == 1
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
    assert all(c["usage"] is None for c in chunks[:-1])


async def test_chat_stream_without_include_usage_has_no_usage_chunk(cluster: FakeCluster) -> None:
    _app, client = api(cluster)
    r = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    chunks = sse_events(r.text)[:-1]
    assert all(c["choices"] for c in chunks) and all("usage" not in c for c in chunks)


async def test_stream_n2_interleaves_choices(cluster: FakeCluster) -> None:
    _app, client = api(cluster)
    r = await client.post("/v1/chat/completions", json={**CHAT, "stream": True, "n": 2})
    chunks = sse_events(r.text)[:-1]
    for index in (0, 1):
        mine = [c["choices"][0] for c in chunks if c["choices"][0]["index"] == index]
        assert mine[0]["delta"]["role"] == "assistant"
        assert "".join(c["delta"].get("content", "") for c in mine) == "".join(WORDS)
        assert mine[-1]["finish_reason"] == "stop"


async def test_incomplete_utf8_is_held_back(cluster: FakeCluster) -> None:
    _app, client = api(cluster)

    async def chunks(body: dict[str, Any]) -> AsyncIterator[bytes]:
        yield frame({"text": "caf\ufffd", "error_code": 0})
        yield frame({"text": "café", "error_code": 0, "finish_reason": "stop"})

    cluster.chunks = chunks  # type: ignore[method-assign]
    r = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    deltas = [c["choices"][0]["delta"].get("content") for c in sse_events(r.text)[:-1]]
    assert "\ufffd" not in "".join(d or "" for d in deltas)
    assert "".join(d or "" for d in deltas) == "café"


async def test_logprobs_are_passed_through(cluster: FakeCluster) -> None:
    cluster.logprobs = True
    _app, client = api(cluster)
    r = await client.post("/v1/chat/completions", json={**CHAT, "logprobs": True, "top_logprobs": 1})
    content = r.json()["choices"][0]["logprobs"]["content"]
    assert [e["token"] for e in content] == WORDS
    assert content[0]["top_logprobs"] == [{"token": "Hello", "logprob": -0.5, "bytes": list(b"Hello")}]
    assert cluster.generate[-1]["logprobs"] == 1
    r = await client.post(
        "/v1/completions", json={"model": MODEL, "prompt": "a b", "logprobs": 2, "stream": True}
    )
    pieces = [c["choices"][0]["logprobs"] for c in sse_events(r.text)[:-1] if c["choices"][0]["logprobs"]]
    assert [t for p in pieces for t in p["tokens"]] == WORDS  # each token once across the stream


async def test_completions_shape_echo_and_multiple_prompts(cluster: FakeCluster) -> None:
    _app, client = api(cluster)
    r = await client.post("/v1/completions", json={"model": MODEL, "prompt": "Once upon", "echo": True})
    data = r.json()
    assert data["id"].startswith("cmpl-") and data["object"] == "text_completion"
    assert data["choices"][0]["text"] == "Once upon" + "".join(WORDS)
    assert cluster.generate[-1]["max_new_tokens"] == 16  # OpenAI's completions default
    assert cluster.generate[-1]["echo"] is True and "messages" not in cluster.generate[-1]
    r = await client.post(
        "/v1/completions", json={"model": MODEL, "prompt": ["a", "b c"], "n": 2, "max_tokens": 1}
    )
    data = r.json()
    assert [c["index"] for c in data["choices"]] == [0, 1, 2, 3]
    assert [g["prompt"] for g in cluster.generate[-4:]] == ["a", "a", "b c", "b c"]
    assert data["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}


async def test_completions_trailing_slash_like_kagentsys(cluster: FakeCluster) -> None:
    _app, client = api(cluster)
    body = {
        "model": MODEL.lower(),
        "prompt": "Plan:",
        "temperature": 0.1,
        "top_p": 0.75,
        "top_k": 40,
        "max_tokens": 512,
    }
    r = await client.post("/v1/completions/", json=body)
    assert r.status_code == 200, r.text  # served, not redirected
    assert r.json()["choices"][0]["text"] == "".join(WORDS)
    r = await client.post("/v1/chat/completions/", json=CHAT)
    assert r.status_code == 200


async def test_completions_stream(cluster: FakeCluster) -> None:
    _app, client = api(cluster)
    body = {"model": MODEL, "prompt": "x", "stream": True, "stream_options": {"include_usage": True}}
    r = await client.post("/v1/completions", json=body)
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "text_completion" for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == "".join(WORDS)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5


async def test_embeddings_float_and_base64(cluster: FakeCluster) -> None:
    _app, client = api(cluster, embedding_batch_size=2)
    r = await client.post("/v1/embeddings", json={"model": MODEL, "input": ["a", "bb", "ccc"]})
    data = r.json()
    assert r.status_code == 200 and data["object"] == "list"
    assert [d["index"] for d in data["data"]] == [0, 1, 2]
    assert data["data"][1]["embedding"] == [2.0, 0.5, -1.0]
    assert data["usage"] == {"prompt_tokens": 6, "total_tokens": 6}
    assert cluster.calls["http://worker-a/worker_get_embeddings"] == 2  # batches of 2
    r = await client.post(
        "/v1/embeddings", json={"model": MODEL, "input": "abcd", "encoding_format": "base64"}
    )
    raw = base64.b64decode(r.json()["data"][0]["embedding"])
    assert struct.unpack("<3f", raw) == (4.0, 0.5, -1.0)
    r = await client.post("/v1/embeddings", json={"model": MODEL, "input": [1, 2, 3]})
    assert r.status_code == 400


# ----------------------------------------------------------------------------- errors


async def test_bad_parameters_are_400_with_the_envelope(cluster: FakeCluster) -> None:
    _app, client = api(cluster)
    cases = [
        {**CHAT, "temperature": 3},
        {**CHAT, "n": 0},
        {**CHAT, "top_k": 0},
        {**CHAT, "max_tokens": 0},
        {"model": MODEL},
        {**CHAT, "messages": []},
        {
            **CHAT,
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
        },
    ]
    for body in cases:
        r = await client.post("/v1/chat/completions", json=body)
        assert r.status_code == 400, (body, r.text)
        error = r.json()["error"]
        assert error["type"] == "invalid_request_error" and error["message"]
    r = await client.post(
        "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    # Token-id prompts are accepted now (issue 10); empty or mixed prompts are not.
    for prompt in ([], [[]], [1, "a"]):
        r = await client.post("/v1/completions", json={"model": MODEL, "prompt": prompt})
        assert r.status_code == 400 and r.json()["error"]["param"].startswith("prompt"), (prompt, r.text)
    r = await client.post("/v1/completions", json={"model": MODEL, "prompt": "a", "max_tokens": 0})
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens"
    assert cluster.generate == []


async def test_unknown_model_is_404_and_empty_registry_503(cluster: FakeCluster) -> None:
    _app, client = api(cluster)
    r = await client.post("/v1/chat/completions", json={**CHAT, "model": "gpt-4"})
    assert r.status_code == 404
    assert r.json()["error"]["param"] == "model" and MODEL in r.json()["error"]["message"]
    cluster.workers = {}
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 503


async def test_controller_down_is_503_and_cached_route_survives(cluster: FakeCluster) -> None:
    _app, client = api(cluster, worker_address_ttl=0.0)
    assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    cluster.controller_up = False
    # The last known worker is still used while the controller is away.
    assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    r = await client.post("/v1/chat/completions", json={**CHAT, "model": "other"})
    assert r.status_code == 503 and r.json()["error"]["type"] == "service_unavailable"
    r = await client.get("/v1/models")
    assert r.status_code == 503


async def test_prompt_over_the_context_is_400_naming_the_limit(cluster: FakeCluster) -> None:
    cluster.first_chunk_error = (
        40303,
        "This model's maximum context length is 64 tokens, but the prompt has 80.",
    )
    app, client = api(cluster)
    for stream in (False, True):
        r = await client.post("/v1/chat/completions", json={**CHAT, "stream": stream})
        assert r.status_code == 400
        assert "maximum context length is 64" in r.json()["error"]["message"]
        assert SERVER_ERROR_MSG not in r.json()["error"]["message"]
    assert app.state.admission.in_flight == 0


async def test_worker_errors_map_to_statuses(cluster: FakeCluster) -> None:
    app, client = api(cluster)
    cluster.first_chunk_error = (50001, "boom")
    assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 500
    cluster.first_chunk_error = None
    cluster.http_status = 429
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 429 and r.headers["retry-after"] == "3"
    cluster.http_status = None
    cluster.dead.add("http://worker-a")
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 503
    assert app.state.admission.in_flight == 0


async def test_unreachable_worker_is_forgotten_and_the_request_retried(cluster: FakeCluster) -> None:
    _app, client = api(cluster)
    assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    # worker-a dies; the controller now routes to worker-b.
    cluster.dead.add("http://worker-a")
    cluster.workers = {"http://worker-b": [MODEL], "http://worker-a": [MODEL]}
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200
    assert cluster.calls["http://worker-b/worker_generate_stream"] == 1


async def test_429_with_retry_after_above_max_queue(cluster: FakeCluster) -> None:
    app, client = api(cluster, max_queue=2, retry_after=2.0)
    app.state.admission.acquire(2)  # two sequences already in flight
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 429
    assert r.headers["retry-after"] == "2"
    assert r.json()["error"]["type"] == "rate_limit_error"
    app.state.admission.release(2)
    r = await client.post("/v1/chat/completions", json={**CHAT, "n": 3})
    assert r.status_code == 400  # can never fit
    assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    assert cluster.generate and app.state.admission.in_flight == 0


async def test_413_for_bodies_over_the_limit(cluster: FakeCluster) -> None:
    _app, client = api(cluster, max_request_bytes=200)
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 500}]}
    r = await client.post("/v1/chat/completions", json=big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted while reading
        data = json.dumps(big).encode()
        for i in range(0, len(data), 64):
            yield data[i : i + 64]

    r = await client.post("/v1/chat/completions", content=chunked())
    assert r.status_code == 413
    assert cluster.generate == []


async def test_api_keys(cluster: FakeCluster) -> None:
    _app, client = api(cluster, api_keys=("k1", "k2"))
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 401
    assert r.json()["error"] == {
        "message": r.json()["error"]["message"],
        "type": "authentication_error",
        "param": None,
        "code": "invalid_api_key",
    }
    r = await client.get("/v1/models", headers={"Authorization": "Bearer k3"})
    assert r.status_code == 401
    r = await client.get("/v1/models", headers={"Authorization": "Basic k1"})
    assert r.status_code == 401
    r = await client.get("/v1/models", headers={"Authorization": "Bearer k2"})
    assert r.status_code == 200
    assert (await client.get("/health")).status_code == 200  # probes need no key
    assert (await client.get("/metrics")).status_code == 200


async def test_mid_stream_failure_sends_an_error_event_then_done(cluster: FakeCluster) -> None:
    cluster.fail_after = 2
    app, client = api(cluster)
    r = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert r.status_code == 200
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    assert set(events[-2]) == {"error"} and events[-2]["error"]["message"]
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-2]) == "Hello there"
    assert app.state.admission.in_flight == 0
    # The failed worker's cached address was dropped: the next request asks the controller.
    before = cluster.calls["http://controller/get_worker_address"]
    cluster.fail_after = None
    assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    assert cluster.calls["http://controller/get_worker_address"] == before + 1


async def test_idle_stream_sends_ping_comments(cluster: FakeCluster) -> None:
    cluster.delay = 0.05
    _app, client = api(cluster, keepalive=0.01)
    r = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert ": ping\n\n" in r.text
    assert sse_events(r.text)[-1] == "[DONE]"


async def test_control_plane_is_cached(cluster: FakeCluster) -> None:
    _app, client = api(cluster, worker_address_ttl=60.0)
    results = await asyncio.gather(
        *(client.post("/v1/completions", json={"model": MODEL, "prompt": "a"}) for _ in range(8))
    )
    assert all(r.status_code == 200 for r in results)
    assert cluster.calls["http://controller/get_worker_address"] == 1  # single flight, then cached
    assert cluster.calls["http://controller/list_models"] == 0


async def test_client_disconnect_closes_the_worker_stream_and_frees_the_slot(cluster: FakeCluster) -> None:
    cluster.hang = True
    app, _client = api(cluster)
    body = json.dumps({**CHAT, "stream": True}).encode()
    sent: list[dict[str, Any]] = []
    first_body = asyncio.Event()
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await first_body.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and message.get("body"):
            first_body.set()

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions",
        "query_string": b"", "root_path": "", "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1), "server": ("api", 80),
    }  # fmt: skip
    await asyncio.wait_for(app(scope, receive, send), 5)
    assert sent[0]["status"] == 200
    assert cluster.closed_streams == 1
    assert app.state.admission.in_flight == 0


async def test_health_and_metrics(cluster: FakeCluster) -> None:
    _app, client = api(cluster)
    await client.post("/v1/chat/completions", json=CHAT)
    await client.post("/v1/chat/completions", json={**CHAT, "model": "nope"})
    health = (await client.get("/health")).json()
    assert health["status"] == "ok" and health["in_flight"] == 0
    text = (await client.get("/metrics")).text
    assert 'camel_chat_openai_api_requests_total{endpoint="/v1/chat/completions",status="200"} 1.0' in text
    assert 'status="404"' in text
    assert 'camel_chat_openai_api_tokens_total{kind="completion"} 5.0' in text
    assert "camel_chat_openai_api_queue_depth" in text


# ----------------------------------------------------------------------------- the official client


async def test_official_openai_client_in_process(cluster: FakeCluster) -> None:
    app = make_app(
        Settings(controller_address="http://controller", api_keys=("secret",)),
        http_client=httpx.AsyncClient(transport=cluster.transport()),
    )
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
    client = openai.AsyncOpenAI(base_url="http://api/v1", api_key="secret", http_client=http, max_retries=0)
    models = await client.models.list()
    assert [m.id for m in models.data] == [MODEL]
    chat = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    assert (
        chat.choices[0].message.content == "".join(WORDS) and chat.usage and chat.usage.completion_tokens == 5
    )
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage = [], None
    async for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
        usage = chunk.usage or usage
    assert "".join(pieces) == "".join(WORDS) and usage and usage.total_tokens == 8
    completion = await client.completions.create(model=MODEL, prompt="x", max_tokens=2)
    assert completion.choices[0].text == "Hello there"
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="missing", messages=[{"role": "user", "content": "Hi"}])
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}], temperature=5
        )
    bad = openai.AsyncOpenAI(base_url="http://api/v1", api_key="wrong", http_client=http, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await bad.models.list()
    cluster.fail_after = 1
    stream = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    with pytest.raises(openai.APIError):
        async for _chunk in stream:
            pass


def test_the_api_server_never_imports_torch() -> None:
    code = (
        "import sys\n"
        "from camel_chat.serve import openai_api_server as m\n"
        "m.make_app(m.Settings())\n"
        "m.build_parser().parse_args([])\n"
        "bad = [n for n in ('torch', 'transformers') if n in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


async def test_a_slow_client_gets_fewer_bigger_deltas_and_nothing_lost() -> None:
    from camel_chat.serve.openai_stream import Choice, merged

    class Instant:
        """Five cumulative chunks, all available at once."""

        def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
            return self.chunks()

        async def chunks(self) -> AsyncIterator[dict[str, Any]]:
            text = ""
            for i, word in enumerate(WORDS):
                text += word
                yield {"text": text, "finish_reason": "stop" if i == len(WORDS) - 1 else None}
                await asyncio.sleep(0)

    choice = Choice(index=0, stream=Instant())  # type: ignore[arg-type]
    deltas = []
    async for item in merged([choice], keepalive=60):
        assert item is not None
        deltas.append(choice.absorb(item[1]))
        await asyncio.sleep(0.01)  # a slow client: the pump gets ahead meanwhile
    assert "".join(deltas) == "".join(WORDS)
    assert len(deltas) < len(WORDS) and choice.finish_reason == "stop"


async def test_a_full_worker_is_routed_around_and_429_only_when_all_are_full(cluster: FakeCluster) -> None:
    app, client = api(cluster)
    assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200  # route cached
    # worker-a fills up; the controller (shortest queue) would now pick worker-b.
    cluster.workers = {"http://worker-a": [MODEL], "http://worker-b": [MODEL]}
    cluster.full.add("http://worker-a")
    assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    assert cluster.calls["http://worker-a/worker_generate_stream"] == 2
    assert cluster.calls["http://worker-b/worker_generate_stream"] == 1
    cluster.full.add("http://worker-b")
    r = await client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert r.json()["error"]["type"] == "rate_limit_error"
    assert app.state.admission.in_flight == 0


async def test_one_choice_refused_answers_429_at_once_and_cancels_the_waiting_ones(
    cluster: FakeCluster,
) -> None:
    # Two choices wait for a worker slot that never frees; the third is refused. Found by
    # schemathesis (tests/fuzz/test_fuzz_openapi.py): with n=128 the client got the 429 only
    # after the worker had generated the other 80 choices.
    cluster.capacity = 2
    app, client = api(cluster)
    r = await asyncio.wait_for(client.post("/v1/chat/completions", json={**CHAT, "n": 3}), 5)
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
    assert cluster.abandoned_opens == 2 and cluster.waiting_opens == 0
    assert app.state.admission.in_flight == 0


async def test_openapi_documents_the_hand_parsed_bodies(cluster: FakeCluster) -> None:
    app, client = api(cluster)
    doc = (await client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    schemas = doc["components"]["schemas"]
    for path, name in [
        ("/v1/chat/completions", "ChatCompletionRequest"),
        ("/v1/completions", "CompletionRequest"),
        ("/v1/embeddings", "EmbeddingRequest"),
        ("/v1/engines/{model_name}/embeddings", "EmbeddingRequest"),
    ]:
        operation = doc["paths"][path]["post"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{name}"}
        assert "422" not in operation["responses"]  # validation errors are 400, in OpenAI's envelope
        assert operation["responses"]["default"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorResponse"
        }
    # nested models are hoisted next to them, and every $ref resolves
    assert {"ChatMessage", "StreamOptions", "ErrorDetail"} <= set(schemas)
    refs = {ref.rsplit("/", 1)[1] for ref in _refs(doc)}
    assert refs <= set(schemas), refs - set(schemas)
    assert schemas["CompletionRequest"]["properties"]["max_tokens"]["anyOf"][0]["minimum"] == 0
    assert app.openapi() is app.openapi()  # built once
    docs = await client.get("/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text
    # the parsing did not change: unknown fields and nulls are still ignored, errors still 400
    lenient = {**CHAT, "stream": None, "unknown": {"x": 1}, "messages": [{"role": "user", "content": "Hi"}]}
    assert (await client.post("/v1/chat/completions", json=lenient)).status_code == 200
    bad = await client.post("/v1/chat/completions", json={**CHAT, "n": 0})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "n"


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)
