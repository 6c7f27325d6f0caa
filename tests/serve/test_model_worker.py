"""The worker app in-process (httpx.ASGITransport): FastChat endpoints, slots, cancellation, registration."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import struct
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from camel_chat.serve.errors import ErrorCode
from camel_chat.serve.hf_engine import TransformersEngine
from camel_chat.serve.model_worker import WorkerSettings, build_parser, make_app, settings_from_args
from camel_chat.serve.protocol import GenerateChunk, GenerateRequest, Usage

pytestmark = pytest.mark.anyio
USER = [{"role": "user", "content": "hello there"}]
BODY = {"model": "tiny", "prompt": "", "messages": USER, "temperature": 0, "max_new_tokens": 6, "echo": False}
NO_REGISTER = WorkerSettings(register=False)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TransformersEngine]:
    from camel_chat.model.checkpoint import write_template_files
    from camel_chat.model.loader import load_tokenizer
    from camel_chat.model.tiny import save_tiny

    path = save_tiny(tmp_path_factory.mktemp("worker") / "tiny")
    write_template_files(path, load_tokenizer(path, ensure_pad=False), "vicuna_v1.1")
    eng = TransformersEngine.from_pretrained(path, model_names="tiny,tiny-alias")
    yield eng
    eng.close()


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://worker", timeout=60)


def frames(body: bytes) -> list[dict[str, Any]]:
    assert body.endswith(b"\0")
    return [json.loads(piece) for piece in body.split(b"\0") if piece]


def slots(app: Any) -> tuple[int, int]:
    limiter = app.state.worker.limiter
    return limiter.in_use, limiter.waiting


async def until(condition: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


# ------------------------------------------------------------------ endpoints


async def test_stream_is_nul_delimited_cumulative_with_exact_usage(engine: TransformersEngine) -> None:
    app = make_app(engine, NO_REGISTER)
    async with client_for(app) as client:
        response = await client.post("/worker_generate_stream", json=BODY)
        single = (await client.post("/worker_generate", json=BODY)).json()
        legacy = await client.post("/worker_generate_completion_stream", json=BODY)
    assert response.status_code == 200
    chunks = frames(response.content)
    assert all(c["error_code"] == 0 for c in chunks)
    assert all(b["text"].startswith(a["text"]) for a, b in itertools.pairwise(chunks))
    last = chunks[-1]
    assert last["finish_reason"] in ("stop", "length") and all(
        c["finish_reason"] is None for c in chunks[:-1]
    )
    prompt_tokens = len(engine.render_messages(USER))
    assert last["usage"]["prompt_tokens"] == prompt_tokens
    assert last["usage"]["total_tokens"] == prompt_tokens + last["usage"]["completion_tokens"]
    assert single == last and frames(legacy.content)[-1] == last
    assert slots(app) == (0, 0)


async def test_stop_and_max_new_tokens_over_http(engine: TransformersEngine) -> None:
    app = make_app(engine, NO_REGISTER)
    async with client_for(app) as client:
        free = (await client.post("/worker_generate", json={**BODY, "max_new_tokens": 10})).json()
        assert free["usage"]["completion_tokens"] <= 10
        stop = free["text"][3:6]
        stopped = (
            await client.post("/worker_generate", json={**BODY, "max_new_tokens": 10, "stop": stop})
        ).json()
        short = (await client.post("/worker_generate", json={**BODY, "max_new_tokens": 1})).json()
    assert stopped["finish_reason"] == "stop" and stopped["text"] == free["text"][: free["text"].find(stop)]
    assert short["usage"]["completion_tokens"] == 1


async def test_small_endpoints(engine: TransformersEngine) -> None:
    app = make_app(engine, NO_REGISTER)
    async with client_for(app) as client:
        count = (await client.post("/count_token", json={"model": "tiny", "prompt": "hello world"})).json()
        details = (await client.post("/model_details", json={"model": "tiny"})).json()
        conv = (await client.post("/worker_get_conv_template", json={"model": "tiny"})).json()
        status = (await client.post("/worker_get_status")).json()
        health = await client.get("/health")
    assert count == {"count": engine.count_tokens("hello world"), "error_code": 0}
    # The tiny checkpoint's generation config sets no sampling values.
    no_sampling = {"temperature": None, "top_p": None, "top_k": None, "repetition_penalty": None}
    assert details == {"context_length": 512, "sampling": no_sampling}
    assert conv["conv"]["name"] == "vicuna_v1.1" and conv["conv"]["roles"] == ["USER", "ASSISTANT"]
    assert conv["conv"]["stop_token_ids"] == [2]
    assert status == {"model_names": ["tiny", "tiny-alias"], "speed": 1, "queue_length": 0}
    assert health.status_code == 200 and health.json()["status"] == "ok"


async def test_model_details_report_the_checkpoint_sampling_defaults(
    engine: TransformersEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a generation_config.json sets (SmolLM2's: temperature 0.2, top_p 0.9) is reported,
    what it leaves to FastChat's defaults is null."""
    from camel_chat.serve.sampling import SamplingDefaults

    smol = SamplingDefaults.from_generation_config({"temperature": 0.2, "top_p": 0.9, "top_k": 0})
    monkeypatch.setattr(engine, "sampling_defaults", smol)
    async with client_for(make_app(engine, NO_REGISTER)) as client:
        details = (await client.post("/model_details", json={"model": "tiny"})).json()
    assert details["sampling"] == {"temperature": 0.2, "top_p": 0.9, "top_k": -1, "repetition_penalty": None}


async def test_embeddings_float_and_base64(engine: TransformersEngine) -> None:
    app = make_app(engine, NO_REGISTER)
    body = {"model": "tiny", "input": ["hello", "the camel"]}
    async with client_for(app) as client:
        plain = (await client.post("/worker_get_embeddings", json=body)).json()
        packed = (
            await client.post("/worker_get_embeddings", json={**body, "encoding_format": "base64"})
        ).json()
        empty = (await client.post("/worker_get_embeddings", json={**body, "input": [""]})).json()
    hidden = engine.model.config.hidden_size
    assert [len(v) for v in plain["embedding"]] == [hidden, hidden]
    assert plain["token_num"] == engine.count_tokens("hello") + engine.count_tokens("the camel")
    decoded = [list(struct.unpack(f"<{hidden}f", base64.b64decode(s))) for s in packed["embedding"]]
    assert decoded == [pytest.approx(v, abs=1e-6) for v in plain["embedding"]]
    assert empty["error_code"] == ErrorCode.PARAM_OUT_OF_RANGE and "empty" in empty["text"]
    assert slots(app) == (0, 0)


async def test_prompt_over_the_context_is_an_error_chunk(engine: TransformersEngine) -> None:
    app = make_app(engine, NO_REGISTER)
    body = {**BODY, "messages": None, "prompt": "hello world " * 400}
    async with client_for(app) as client:
        response = await client.post("/worker_generate_stream", json=body)
        single = (await client.post("/worker_generate", json=body)).json()
    (chunk,) = frames(response.content)
    assert response.status_code == 200 and chunk["error_code"] == ErrorCode.CONTEXT_OVERFLOW
    assert "maximum context length is 512" in chunk["text"] and single == chunk
    assert slots(app) == (0, 0)


async def test_metrics_count_tokens(engine: TransformersEngine) -> None:
    app = make_app(engine, NO_REGISTER)
    async with client_for(app) as client:
        last = (await client.post("/worker_generate", json=BODY)).json()
        text = (await client.get("/metrics")).text
    prompt = last["usage"]["prompt_tokens"]
    assert f'camel_chat_worker_tokens_total{{kind="prompt"}} {float(prompt)}' in text
    assert 'camel_chat_worker_requests_total{endpoint="/worker_generate",status="200"} 1.0' in text
    assert "camel_chat_worker_queue_depth 0.0" in text


# ------------------------------------------------------------------ slots and cancellation


class ScriptedEngine:
    """An Engine whose generate yields `texts` then fails (or waits on `gate` between chunks)."""

    model_names: ClassVar[list[str]] = ["fake"]
    context_length = 64
    template_name = None

    def __init__(self, texts: Sequence[str], fail: bool = False, gate: asyncio.Event | None = None) -> None:
        self.texts, self.fail, self.gate = list(texts), fail, gate
        self.started = 0
        self.closed = 0

    async def generate(self, request: GenerateRequest) -> AsyncIterator[GenerateChunk]:
        self.started += 1
        try:
            for i, text in enumerate(self.texts):
                if self.gate is not None:
                    await self.gate.wait()
                usage = Usage(prompt_tokens=1, completion_tokens=i + 1, total_tokens=i + 2)
                yield GenerateChunk(text=text, usage=usage)
            if self.fail:
                raise RuntimeError("boom")
            yield GenerateChunk(text=self.texts[-1], finish_reason="stop")
        finally:
            self.closed += 1

    def count_tokens(self, prompt: str) -> int:
        return 1

    async def embed(self, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        raise RuntimeError("no embeddings")

    def render_messages(self, messages: Sequence[Any]) -> list[int]:
        return [1]

    def conv_template(self) -> dict[str, Any]:
        return {"conv": {}}

    def stats(self) -> dict[str, Any]:
        return {}

    async def aclose(self) -> None:
        return None


async def test_slot_is_returned_after_an_exception() -> None:
    fake = ScriptedEngine(["a", "ab"], fail=True)
    app = make_app(fake, WorkerSettings(register=False, limit_worker_concurrency=1))  # type: ignore[arg-type]
    async with client_for(app) as client:
        for _ in range(2):  # with a leaked slot the second request would wait forever
            async with asyncio.timeout(10):
                chunks = frames((await client.post("/worker_generate_stream", json=BODY)).content)
            assert [c["text"] for c in chunks[:2]] == ["a", "ab"]
            assert chunks[-1]["error_code"] == ErrorCode.INTERNAL_ERROR and "boom" in chunks[-1]["text"]
        embed = (await client.post("/worker_get_embeddings", json={"input": ["x"]})).json()
    assert embed["error_code"] == ErrorCode.INTERNAL_ERROR
    assert slots(app) == (0, 0) and fake.closed == 2


async def asgi_post_then_disconnect(
    app: Any, path: str, body: dict[str, Any], after_chunks: int
) -> list[Any]:
    """Drive the ASGI app directly: the client disconnects after `after_chunks` body chunks."""
    payload = json.dumps(body).encode()
    sent: list[Any] = []
    gone = asyncio.Event()
    if after_chunks == 0:
        gone.set()
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": payload, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        chunks = [m for m in sent if m["type"] == "http.response.body" and m.get("body")]
        if len(chunks) >= after_chunks > 0:
            gone.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        "client": ("127.0.0.1", 5000),
        "server": ("worker", 80),
    }
    async with asyncio.timeout(30):
        await app(scope, receive, send)
    return sent


async def test_client_disconnect_cancels_the_stream_and_frees_the_slot(engine: TransformersEngine) -> None:
    app = make_app(engine, WorkerSettings(register=False, limit_worker_concurrency=1))
    sent = await asgi_post_then_disconnect(app, "/worker_generate_stream", {**BODY, "max_new_tokens": 400}, 1)
    bodies = [m for m in sent if m["type"] == "http.response.body"]
    assert len(bodies) >= 1 and not any(m.get("more_body") is False for m in bodies)  # never finished
    assert slots(app) == (0, 0)
    await until(lambda: engine.stats()["running"] == 0)
    async with client_for(app) as client:  # the single slot is free again
        async with asyncio.timeout(20):
            assert (await client.post("/worker_generate", json=BODY)).json()["error_code"] == 0


async def test_client_disconnect_cancels_a_non_streaming_request(engine: TransformersEngine) -> None:
    app = make_app(engine, WorkerSettings(register=False, limit_worker_concurrency=1))
    sent = await asgi_post_then_disconnect(app, "/worker_generate", {**BODY, "max_new_tokens": 400}, 0)
    assert sent[0]["status"] == 499
    assert slots(app) == (0, 0)
    await until(lambda: engine.stats()["running"] == 0)


async def test_queue_length_counts_running_and_waiting() -> None:
    gate = asyncio.Event()
    fake = ScriptedEngine(["a"], gate=gate)
    app = make_app(fake, WorkerSettings(register=False, limit_worker_concurrency=1))  # type: ignore[arg-type]
    async with client_for(app) as client:
        calls = [asyncio.create_task(client.post("/worker_generate", json=BODY)) for _ in range(2)]
        await until(lambda: slots(app) == (1, 1))
        status = (await client.post("/worker_get_status")).json()
        assert status["queue_length"] == 2
        gate.set()
        answers = await asyncio.gather(*calls)
    assert [a.json()["finish_reason"] for a in answers] == ["stop", "stop"]
    assert slots(app) == (0, 0)


# ------------------------------------------------------------------ registration


class FakeController:
    """A controller behind httpx.MockTransport: forgets the worker once, fails a few calls."""

    def __init__(self, forget_after: int = 1, fail_first: int = 0, secret: str | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.known: set[str] = set()
        self.heartbeats = 0
        self.forget_after = forget_after
        self.fail_first = fail_first
        self.secret = secret

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.fail_first > 0:
            self.fail_first -= 1
            raise httpx.ConnectError("controller down", request=request)
        if self.secret and request.headers.get("authorization") != f"Bearer {self.secret}":
            return httpx.Response(401, json={"error": {"message": "no"}})
        body = json.loads(request.content or b"null")
        self.calls.append((request.url.path, body))
        if request.url.path == "/register_worker":
            self.known.add(body["worker_name"])
            return httpx.Response(200, json=None)
        if request.url.path == "/receive_heart_beat":
            self.heartbeats += 1
            if self.heartbeats == self.forget_after:  # e.g. the controller restarted
                self.known.clear()
            return httpx.Response(200, json={"exist": body["worker_name"] in self.known})
        return httpx.Response(404)


async def test_registers_heartbeats_and_registers_again_when_forgotten() -> None:
    controller = FakeController(forget_after=2, fail_first=2, secret="s3cret")
    settings = WorkerSettings(
        worker_address="http://w:1",
        controller_address="http://controller",
        heart_beat_interval=0.01,
        retry_interval=0.01,
        controller_secret="s3cret",
    )
    fake = ScriptedEngine(["a"])
    http = httpx.AsyncClient(transport=httpx.MockTransport(controller))
    app = make_app(fake, settings, http_client=http)  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        state = app.state.worker.registration
        await until(lambda: state.registrations >= 2 and controller.heartbeats >= 4)
        assert state.registered
    registers = [body for path, body in controller.calls if path == "/register_worker"]
    assert registers[0]["worker_name"] == "http://w:1"
    assert registers[0]["worker_status"] == {"model_names": ["fake"], "speed": 1, "queue_length": 0}
    beats = [body for path, body in controller.calls if path == "/receive_heart_beat"]
    assert beats[0] == {"worker_name": "http://w:1", "queue_length": 0}
    # register, beat, beat (forgotten) -> register again, beat ...
    paths = [path for path, _ in controller.calls]
    assert paths[:4] == ["/register_worker", "/receive_heart_beat", "/receive_heart_beat", "/register_worker"]
    await http.aclose()
    await asyncio.sleep(0)


def test_command_line_settings() -> None:
    args = build_parser().parse_args(
        [
            "--model-path",
            "x",
            "--host",
            "0.0.0.0",
            "--port",
            "3100",
            "--limit-model-concurrency",
            "3",
            "--no-register",
        ]
    )
    settings = settings_from_args(args)
    assert settings.worker_address == "http://localhost:3100" and settings.limit_worker_concurrency == 3
    assert not settings.register
    args = build_parser().parse_args(
        ["--model-path", "x", "--worker-address", "http://me:9", "--model-name", "m"]
    )
    assert settings_from_args(args).worker_address == "http://me:9" and args.model_names == "m"


def test_missing_model_exits_two(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from camel_chat.serve.model_worker import main

    assert main(["--model-path", str(tmp_path / "missing"), "--device", "cpu", "--no-register"]) == 2
    assert "does not exist" in capsys.readouterr().err
