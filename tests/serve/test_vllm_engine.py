"""The vLLM adapter over a fake AsyncLLM (SamplingParams, chunks, usage, abort); vllm_worker without vllm."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from camel_chat.serve.errors import BadRequest, ErrorCode
from camel_chat.serve.model_worker import WorkerSettings, make_app
from camel_chat.serve.protocol import GenerateRequest
from camel_chat.serve.vllm_engine import VllmEngine

pytestmark = pytest.mark.anyio
USER = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeSamplingParams:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


class FakeAsyncLLM:
    """Yields cumulative RequestOutput-like objects for scripted (token id, text piece) steps."""

    def __init__(self, steps: list[tuple[int, str]], finish_reason: str = "stop", gate: bool = False) -> None:
        self.steps = steps
        self.finish_reason = finish_reason
        self.model_config = SimpleNamespace(max_model_len=256, hf_config=None)
        self.calls: list[tuple[Any, Any, str]] = []
        self.aborted: list[str] = []
        self.gate = asyncio.Event() if gate else None

    async def generate(self, prompt: Any, sampling_params: Any, request_id: str) -> AsyncIterator[Any]:
        self.calls.append((prompt, sampling_params, request_id))
        ids: list[int] = []
        text = ""
        logprobs: list[dict[int, Any]] = []
        for i, (token, piece) in enumerate(self.steps):
            if self.gate is not None and i > 0:
                await self.gate.wait()
            ids.append(token)
            text += piece
            logprobs.append(
                {
                    token: SimpleNamespace(logprob=-0.5, rank=1, decoded_token=piece),
                    token + 1: SimpleNamespace(logprob=-1.5, rank=2, decoded_token="alt"),
                }
            )
            finished = i == len(self.steps) - 1
            completion = SimpleNamespace(
                text=text,
                token_ids=list(ids),
                finish_reason=self.finish_reason if finished else None,
                logprobs=list(logprobs) if sampling_params.kwargs.get("logprobs") is not None else None,
            )
            yield SimpleNamespace(
                outputs=[completion], finished=finished, prompt_token_ids=prompt["prompt_token_ids"]
            )

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from camel_chat.model.checkpoint import write_template_files
    from camel_chat.model.loader import load_tokenizer
    from camel_chat.model.tiny import build_tiny_tokenizer

    path = tmp_path_factory.mktemp("vllm") / "tiny"
    build_tiny_tokenizer().save_pretrained(path)  # the adapter needs only the tokenizer side
    write_template_files(path, load_tokenizer(path, ensure_pad=False), "vicuna_v1.1")
    return path


def make_engine(checkpoint: Path, llm: FakeAsyncLLM) -> VllmEngine:
    return VllmEngine.build(llm, checkpoint, sampling_params_cls=FakeSamplingParams, model_names="tiny")


async def collect(engine: VllmEngine, req: GenerateRequest) -> list[Any]:
    async with asyncio.timeout(10):
        return [chunk async for chunk in engine.generate(req)]


async def test_request_becomes_sampling_params_and_token_prompt(checkpoint: Path) -> None:
    llm = FakeAsyncLLM([(10, "Hi"), (11, " there")])
    engine = make_engine(checkpoint, llm)
    assert engine.context_length == 256 and engine.template_name == "vicuna_v1.1"
    req = GenerateRequest(
        messages=USER,
        temperature=0,
        top_k=-1,
        max_new_tokens=9999,
        stop="END",
        stop_token_ids=[7],
        echo=False,
    )
    await collect(engine, req)
    prompt, params, _ = llm.calls[0]
    prompt_ids = engine.render_messages(USER)
    assert prompt == {"prompt_token_ids": prompt_ids}
    kw = params.kwargs
    assert kw["temperature"] == 0.0 and kw["top_p"] == 1.0 and "top_k" not in kw and "seed" not in kw
    assert kw["max_tokens"] == 256 - len(prompt_ids)  # clamped to the context
    assert kw["stop"] == ["</s>", "END"] and kw["stop_token_ids"] == [2, 7]
    assert kw["n"] == 1 and not kw["include_stop_str_in_output"] and kw["skip_special_tokens"]

    await collect(engine, GenerateRequest(prompt="x", temperature=0.7, top_p=0.0001, top_k=5, seed=3))
    kw = llm.calls[1][1].kwargs
    assert kw["temperature"] == 0.7 and kw["top_k"] == 5 and kw["seed"] == 3 and kw["top_p"] == 1e-4


async def test_chunks_are_cumulative_with_exact_usage(checkpoint: Path) -> None:
    engine = make_engine(checkpoint, FakeAsyncLLM([(10, "Hi"), (11, " there"), (2, "")], "stop"))
    chunks = await collect(engine, GenerateRequest(messages=USER, echo=False))
    prompt_tokens = len(engine.render_messages(USER))
    assert [c.text for c in chunks] == ["Hi", "Hi there", "Hi there"]
    assert [c.finish_reason for c in chunks] == [None, None, "stop"]
    assert [c.usage.completion_tokens for c in chunks] == [1, 2, 3]
    assert chunks[-1].usage.prompt_tokens == prompt_tokens
    assert chunks[-1].usage.total_tokens == prompt_tokens + 3
    echoed = await collect(engine, GenerateRequest(prompt="Q:", echo=True))
    assert echoed[-1].text == "Q:Hi there"


async def test_logprobs_are_fastchat_shaped(checkpoint: Path) -> None:
    engine = make_engine(checkpoint, FakeAsyncLLM([(10, "Hi"), (11, " there")], "length"))
    last = (await collect(engine, GenerateRequest(messages=USER, echo=False, logprobs=1)))[-1]
    assert last.finish_reason == "length"
    assert last.logprobs == {
        "text_offset": [0, 2],
        "tokens": ["Hi", " there"],
        "token_logprobs": [-0.5, -0.5],
        "top_logprobs": [{"Hi": -0.5}, {" there": -0.5}],
    }


class PromptScoringLLM(FakeAsyncLLM):
    """Adds vLLM's `prompt_logprobs` to the first output when the sampling params ask for them:
    None for the first prompt token, then {id: Logprob} with the prompt token (rank 3) and one
    better-ranked alternative (rank 1)."""

    async def generate(self, prompt: Any, sampling_params: Any, request_id: str) -> AsyncIterator[Any]:
        ids = prompt["prompt_token_ids"]
        entries = None
        if sampling_params.kwargs.get("prompt_logprobs") is not None:
            entries = [None] + [
                {
                    t: SimpleNamespace(logprob=-2.0 - i, rank=3, decoded_token=f"p{t}"),
                    99: SimpleNamespace(logprob=-0.1, rank=1, decoded_token="best"),
                }
                for i, t in enumerate(ids[1:])
            ]
        async for output in super().generate(prompt, sampling_params, request_id):
            output.prompt_logprobs, entries = entries, None
            yield output


async def test_echo_logprobs_map_to_prompt_logprobs(checkpoint: Path) -> None:
    llm = PromptScoringLLM([(10, "Hi"), (11, " there")], "length")
    engine = make_engine(checkpoint, llm)
    ids = engine.tokenizer("the cat sat")["input_ids"]
    last = (await collect(engine, GenerateRequest(prompt_token_ids=ids, echo=True, logprobs=1)))[-1]
    kw = llm.calls[0][1].kwargs
    assert llm.calls[0][0] == {"prompt_token_ids": ids} and kw["prompt_logprobs"] == 1
    lp = last.logprobs
    assert lp is not None and len(lp["tokens"]) == len(ids) + 2
    assert lp["token_logprobs"] == [None] + [-2.0 - i for i in range(len(ids) - 1)] + [-0.5, -0.5]
    assert lp["top_logprobs"][0] is None
    assert lp["top_logprobs"][1] == {"best": -0.1, f"p{ids[1]}": -2.0}  # top-1 + the prompt token
    assert lp["tokens"][-2:] == ["Hi", " there"]
    echo = engine.tokenizer.decode(ids, skip_special_tokens=True)
    assert last.text == echo + "Hi there" and lp["text_offset"][len(ids)] == len(echo)

    # max_tokens 0: vLLM is asked for one token, which is dropped; its request is aborted.
    llm = PromptScoringLLM([(10, "Hi"), (11, " there")], "length", gate=True)
    engine = make_engine(checkpoint, llm)
    chunks = await collect(
        engine, GenerateRequest(prompt_token_ids=ids, echo=True, logprobs=0, max_new_tokens=0)
    )
    assert llm.calls[0][1].kwargs["max_tokens"] == 1 and llm.aborted == [llm.calls[0][2]]
    (only,) = chunks
    assert only.text == echo and only.finish_reason == "length" and only.usage.completion_tokens == 0
    assert only.logprobs is not None and len(only.logprobs["tokens"]) == len(ids)
    assert engine.stats()["aborted"] == 0  # not counted as a client that left
    with pytest.raises(BadRequest, match="0 only with echo"):
        await collect(engine, GenerateRequest(prompt="x", echo=False, max_new_tokens=0))


async def test_a_consumer_that_leaves_aborts_the_request(checkpoint: Path) -> None:
    llm = FakeAsyncLLM([(10, "a"), (11, "b"), (12, "c")], gate=True)
    engine = make_engine(checkpoint, llm)
    stream = engine.generate(GenerateRequest(messages=USER, echo=False))
    first = await stream.__anext__()
    assert first.text == "a"
    await stream.aclose()
    assert llm.aborted == [llm.calls[0][2]] and engine.stats()["running"] == 0
    llm.gate.set()  # type: ignore[union-attr]
    await collect(engine, GenerateRequest(messages=USER))
    assert len(llm.aborted) == 1  # a finished request is not aborted


async def test_bad_input_and_embeddings(checkpoint: Path) -> None:
    engine = make_engine(checkpoint, FakeAsyncLLM([(10, "a")]))
    with pytest.raises(BadRequest, match="maximum context length is 256"):
        await collect(engine, GenerateRequest(prompt="hello " * 300))
    with pytest.raises(BadRequest, match="embeddings"):
        await engine.embed(["x"])
    assert engine.count_tokens("hello world") == len(engine.tokenizer("hello world")["input_ids"])


async def test_worker_app_over_the_vllm_engine(checkpoint: Path) -> None:
    engine = make_engine(checkpoint, FakeAsyncLLM([(10, "Hi"), (11, " there")]))
    app = make_app(engine, WorkerSettings(register=False))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://w") as client:
        body = {"model": "tiny", "messages": USER, "echo": False}
        stream = await client.post("/worker_generate_stream", json=body)
        embed = (await client.post("/worker_get_embeddings", json={"input": ["x"]})).json()
        conv = (await client.post("/worker_get_conv_template")).json()
    chunks = [json.loads(p) for p in stream.content.split(b"\0") if p]
    assert chunks[-1]["text"] == "Hi there" and chunks[-1]["finish_reason"] == "stop"
    assert embed["error_code"] == ErrorCode.PARAM_OUT_OF_RANGE
    assert conv["conv"]["name"] == "vicuna_v1.1"


def test_vllm_worker_without_vllm_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from camel_chat.serve import vllm_worker

    monkeypatch.setattr(vllm_worker, "vllm_available", lambda: False)
    assert vllm_worker.main(["--model-path", "x", "--tensor-parallel-size", "2"]) == 1
    assert "pip install 'camel_chat[vllm]'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        vllm_worker.main(["--help"])
    assert info.value.code == 0 and "--limit-worker-concurrency" in capsys.readouterr().out
