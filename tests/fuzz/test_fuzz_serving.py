"""Malformed request bodies to the FastChat worker and controller endpoints and to the OpenAI
server's /v1 routes (in-process, httpx ASGITransport; the OpenAI server's cluster is a mock that
always has a worker): no answer is a 500, and every error answer is a JSON error body. The
bodies start from a real request and are damaged like the files (bytes, UTF-8, nesting, types)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

import httpx
import pytest
from fuzz_mutations import mutated_json
from hypothesis import given
from hypothesis import strategies as st

from camel_chat.serve.controller import make_app as make_controller
from camel_chat.serve.model_worker import WorkerSettings
from camel_chat.serve.model_worker import make_app as make_worker
from camel_chat.serve.openai_api_server import Settings
from camel_chat.serve.openai_api_server import make_app as make_openai
from camel_chat.serve.protocol import GenerateChunk, GenerateRequest, Usage

GENERATE = {
    "model": "fake",
    "prompt": "hi",
    "messages": [{"role": "user", "content": "hello there"}],
    "temperature": 0.7,
    "top_p": 0.9,
    "max_new_tokens": 6,
    "stop": ["\n"],
    "echo": False,
}
STATUS = {"model_names": ["fake"], "speed": 1, "queue_length": 0}
BODIES = {
    "/worker_generate": GENERATE,
    "/worker_generate_stream": GENERATE,
    "/count_token": {"prompt": "hello there"},
    "/worker_get_embeddings": {"model": "fake", "input": ["hello"]},
    "/register_worker": {"worker_name": "http://w:1", "check_heart_beat": True, "worker_status": STATUS},
    "/receive_heart_beat": {"worker_name": "http://w:1", "queue_length": 0},
    "/get_worker_address": {"model": "fake"},
    "/controller/worker_generate_stream": GENERATE,
    "/v1/chat/completions": {
        "model": "fake",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        "max_tokens": 5,
        "temperature": 0.5,
        "stream": False,
        "stop": ["\n"],
    },
    "/v1/completions": {"model": "fake", "prompt": "Once upon", "max_tokens": 5, "n": 1, "logprobs": None},
    "/v1/embeddings": {"model": "fake", "input": ["hello", "world"]},
}


def _inputs(request: httpx.Request) -> int:
    try:
        return len(json.loads(request.content).get("input") or [])
    except (ValueError, AttributeError, TypeError):
        return 0


def cluster(request: httpx.Request) -> httpx.Response:
    """A controller with one worker serving `fake`, and that worker (FastChat wire format)."""
    path = request.url.path
    answers: dict[str, Any] = {
        "/list_models": {"models": ["fake"]},
        "/get_worker_address": {"address": "http://worker"},
        "/model_details": {"context_length": 64},
        "/count_token": {"count": 1},
        "/worker_get_embeddings": {"embedding": [[0.0, 1.0]] * _inputs(request), "token_num": 2},
        "/worker_get_conv_template": {"conv": {}},
    }
    if path in answers:
        return httpx.Response(200, json=answers[path])
    if path.startswith("/worker_generate"):
        usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        chunk = {"text": "ok", "error_code": 0, "finish_reason": "stop", "usage": usage}
        return httpx.Response(200, content=json.dumps(chunk).encode() + b"\0")
    return httpx.Response(404, json={"detail": "Not Found"})


class FakeEngine:
    model_names: ClassVar[list[str]] = ["fake"]
    context_length = 64
    template_name = None

    async def generate(self, request: GenerateRequest) -> AsyncIterator[GenerateChunk]:
        yield GenerateChunk(text="ok", usage=Usage(prompt_tokens=1, completion_tokens=1, total_tokens=2))
        yield GenerateChunk(text="ok", finish_reason="stop")

    def count_tokens(self, prompt: str) -> int:
        return len(prompt.split())

    async def embed(self, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        return [[0.0, 1.0] for _ in texts], len(texts)

    def render_messages(self, messages: Sequence[Any]) -> list[int]:
        return [1]

    def conv_template(self) -> dict[str, Any]:
        return {"conv": {}}

    def close(self) -> None:
        pass


async def post(path: str, body: bytes) -> httpx.Response:
    controller = path.startswith("/controller/") or path in (
        "/register_worker",
        "/receive_heart_beat",
        "/get_worker_address",
    )
    if path.startswith("/v1/"):
        mock = httpx.AsyncClient(transport=httpx.MockTransport(cluster))
        app = make_openai(Settings(controller_address="http://controller"), http_client=mock)
    elif controller:
        app = make_controller()
    else:
        app = make_worker(FakeEngine(), WorkerSettings(register=False))  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client:
        headers = {"content-type": "application/json"}
        return await client.post(path.removeprefix("/controller"), content=body, headers=headers)


@pytest.mark.parametrize("path", sorted(BODIES))
@given(st.data())
def test_malformed_bodies_get_a_4xx_json_error(path: str, data: st.DataObject) -> None:
    body = data.draw(mutated_json(json.dumps(BODIES[path]).encode()), label="body")
    response = asyncio.run(post(path, body))
    # 502-504 are allowed: a body without worker_status makes the controller ask the worker,
    # which does not exist here, and "unavailable" is then the right answer, not a crash.
    assert response.status_code < 500 or response.status_code in (502, 503, 504), (
        response.status_code,
        response.text[:300],
    )
    if response.status_code >= 400:
        assert isinstance(response.json(), dict), response.text[:300]
