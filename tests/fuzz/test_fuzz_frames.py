"""Malformed worker FRAMES (the NUL-separated JSON chunks a FastChat worker streams back) read by
the OpenAI server and relayed by the controller: never a 500 or a traceback, never a hang.

The upstream is a mock worker (httpx MockTransport) whose `/worker_generate_stream` and
`/worker_generate` answers start from a real three-chunk stream and are damaged like the files
(bytes, truncation, UTF-8, nesting, types). What must hold: a non-streaming request gets 200 or
a JSON error (502 for a worker that spoke garbage); a streaming request is well-formed SSE that
ends with `data: [DONE]`, any failure reported as an `error` event inside it; the controller's
relay answers without a 500 and the whole body arrives.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from fuzz_mutations import mutated_bytes, mutated_json
from hypothesis import given
from hypothesis import strategies as st

from camel_chat.serve.controller import make_app as make_controller
from camel_chat.serve.openai_api_server import Settings
from camel_chat.serve.openai_api_server import make_app as make_openai

USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
CHUNKS = [
    {"text": "Hel", "error_code": 0},
    {"text": "Hello", "error_code": 0, "usage": {**USAGE, "completion_tokens": 1}},
    {"text": "Hello!", "error_code": 0, "finish_reason": "stop", "usage": USAGE},
]
STREAM = b"".join(json.dumps(chunk).encode() + b"\0" for chunk in CHUNKS)
CHAT = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
UNHANDLED = "internal server error"  # what an exception nobody handled becomes (serve/errors.py)
COMPLETION = {"model": "fake", "prompt": "Once upon", "max_tokens": 5}


def worker_answering(frames: bytes) -> httpx.MockTransport:
    """A controller with one worker for `fake`, whose generate endpoints answer `frames`."""

    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        answers = {
            "/list_models": {"models": ["fake"]},
            "/get_worker_address": {"address": "http://worker"},
            "/model_details": {"context_length": 64},
            "/count_token": {"count": 1},
            "/worker_get_conv_template": {"conv": {}},
        }
        if path in answers:
            return httpx.Response(200, json=answers[path])
        if path.startswith("/worker_generate"):
            return httpx.Response(200, content=frames)
        return httpx.Response(404, json={"detail": "Not Found"})

    return httpx.MockTransport(handle)


async def through_api(frames: bytes, path: str, body: dict, stream: bool) -> httpx.Response:
    upstream = httpx.AsyncClient(transport=worker_answering(frames))
    app = make_openai(Settings(controller_address="http://controller"), http_client=upstream)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client:
        async with asyncio.timeout(30):  # a hang is a failure
            response = await client.post(path, json={**body, "stream": stream})
            await response.aread()
            return response


def assert_not_a_crash(status: int, payload: dict) -> None:
    """Unreadable frames are the worker's fault (502); a 500 is allowed only where the frame
    itself reported a worker error (FastChat error codes), never for an unhandled exception."""
    assert status in (400, 404, 413, 429, 500, 502, 503), (status, payload)
    if status == 500:
        assert payload["error"]["message"] != UNHANDLED, payload


def damaged_frames() -> st.SearchStrategy[bytes]:
    whole = mutated_bytes(STREAM)
    # one frame damaged, the others intact (a worker that breaks mid-stream)
    per_frame = st.integers(0, len(CHUNKS) - 1).flatmap(
        lambda k: mutated_json(json.dumps(CHUNKS[k]).encode()).map(
            lambda bad: b"".join(
                (bad if i == k else json.dumps(c).encode()) + b"\0" for i, c in enumerate(CHUNKS)
            )
        )
    )
    return st.one_of(whole, per_frame)


@pytest.mark.parametrize("path,body", [("/v1/chat/completions", CHAT), ("/v1/completions", COMPLETION)])
@given(frames=damaged_frames())
def test_non_streaming_requests_survive_damaged_frames(path: str, body: dict, frames: bytes) -> None:
    response = asyncio.run(through_api(frames, path, body, stream=False))
    payload = response.json()  # an answer or an error: JSON either way
    assert isinstance(payload, dict)
    if response.status_code >= 400:
        assert "error" in payload, payload
        assert_not_a_crash(response.status_code, payload)


@pytest.mark.parametrize("path,body", [("/v1/chat/completions", CHAT), ("/v1/completions", COMPLETION)])
@given(frames=damaged_frames())
def test_streaming_requests_end_cleanly_on_damaged_frames(path: str, body: dict, frames: bytes) -> None:
    response = asyncio.run(through_api(frames, path, body, stream=True))
    if response.status_code != 200:
        assert_not_a_crash(response.status_code, response.json())
        return
    events = [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]
    assert events and events[-1] == "[DONE]", response.text[-300:]
    for event in events[:-1]:
        data = json.loads(event)
        assert isinstance(data, dict), event  # every event is a JSON object
        if "error" in data:
            assert data["error"]["message"] != UNHANDLED, data


async def through_controller(frames: bytes) -> httpx.Response:
    app = make_controller(http_client=httpx.AsyncClient(transport=worker_answering(frames)))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client:
        status = {"model_names": ["fake"], "speed": 1, "queue_length": 0}
        registration = {"worker_name": "http://worker", "check_heart_beat": False, "worker_status": status}
        assert (await client.post("/register_worker", json=registration)).status_code == 200
        async with asyncio.timeout(30):
            response = await client.post("/worker_generate_stream", json={"model": "fake", "prompt": "hi"})
            await response.aread()
            return response


@given(frames=damaged_frames())
def test_the_controller_relay_survives_damaged_frames(frames: bytes) -> None:
    response = asyncio.run(through_controller(frames))
    assert response.status_code != 500, response.text[:300]
