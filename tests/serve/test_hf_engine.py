"""The transformers engine on a tiny checkpoint: templates, exact usage, stops, batching, cancellation."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from camel_chat.serve.detokenize import IncrementalDecoder, StopStrings
from camel_chat.serve.engine import ChatFormat, resolve_template
from camel_chat.serve.errors import BadRequest, ErrorCode
from camel_chat.serve.hf_engine import TransformersEngine
from camel_chat.serve.protocol import GenerateChunk, GenerateRequest

pytestmark = pytest.mark.anyio
USER = [{"role": "user", "content": "hello there, how are you"}]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def write_checkpoint(out: Path, template: str | None = "vicuna_v1.1", arch: str = "llama") -> Path:
    """A tiny checkpoint; with `template`, our metadata + the equivalent Jinja chat_template."""
    from camel_chat.model.checkpoint import write_template_files
    from camel_chat.model.loader import load_tokenizer
    from camel_chat.model.tiny import save_tiny

    save_tiny(out, arch=arch)  # type: ignore[arg-type]
    if template is not None:
        write_template_files(out, load_tokenizer(out, ensure_pad=False), template)
    return out


@pytest.fixture(scope="module")
def vicuna_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("tiny-vicuna"))


@pytest.fixture(scope="module")
def engine(vicuna_dir: Path) -> Iterator[TransformersEngine]:
    eng = TransformersEngine.from_pretrained(vicuna_dir, max_batch_size=8)
    yield eng
    eng.close()


def request(**fields: Any) -> GenerateRequest:
    base: dict[str, Any] = {"messages": USER, "temperature": 0, "max_new_tokens": 8, "echo": False}
    return GenerateRequest(**{**base, **fields})


async def collect(engine: TransformersEngine, req: GenerateRequest) -> list[GenerateChunk]:
    with_timeout = asyncio.timeout(60)
    async with with_timeout:
        return [chunk async for chunk in engine.generate(req)]


def reference_ids(engine: TransformersEngine, prompt_ids: list[int], n: int) -> list[int]:
    """Greedy ids from transformers' own `generate` (no stop ids: the raw continuation)."""
    import torch

    with torch.inference_mode():
        out = engine.model.generate(
            torch.tensor([prompt_ids]), max_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0
        )
    return out[0, len(prompt_ids) :].tolist()


# ------------------------------------------------------------------ templates and prompts


def test_template_and_stops_come_from_the_checkpoint(engine: TransformersEngine) -> None:
    assert engine.template_name == "vicuna_v1.1"
    assert engine.chat.stop_strings == ["</s>"]
    assert engine.chat.stop_token_ids == [engine.tokenizer.eos_token_id]
    assert engine.context_length == 512
    assert engine.model_names == ["tiny-vicuna0"]


def test_resolve_template_order(tmp_path: Path, vicuna_dir: Path) -> None:
    from camel_chat.model.tiny import build_tiny_tokenizer
    from camel_chat.templates import get_template, to_jinja

    plain = build_tiny_tokenizer()
    foreign = build_tiny_tokenizer(chat_template=to_jinja(get_template("chatml")))
    assert resolve_template(vicuna_dir, plain) == "vicuna_v1.1"  # our metadata wins
    assert resolve_template(tmp_path / "some-model", foreign) is None  # the tokenizer's own template
    assert resolve_template(tmp_path / "camel-7b", plain) == "vicuna_v1.1"  # old CAMEL/Vicuna fallback
    assert resolve_template(tmp_path / "some-model", plain) is None
    assert resolve_template(vicuna_dir, plain, "chatml") == "chatml"  # --conv-template overrides
    with pytest.raises(Exception, match="unknown template"):
        resolve_template(vicuna_dir, plain, "nope")


def test_messages_render_with_the_one_renderer(engine: TransformersEngine) -> None:
    from camel_chat.conversation import Conversation
    from camel_chat.templates import SegmentEncoder, SpecialTokens, get_template, render

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]
    conversation = Conversation.of(("user", "Hi!"), system="Be brief.")
    segments = render(
        get_template("vicuna_v1.1"),
        conversation,
        add_generation_prompt=True,
        special=SpecialTokens.of(engine.tokenizer),
    )
    assert engine.render_messages(messages) == SegmentEncoder(engine.tokenizer).encode(segments).input_ids
    text = engine.tokenizer.decode(engine.render_messages(messages))
    assert text == "<s>Be brief. USER: Hi! ASSISTANT:"
    # Lenient: "developer" is a system message; system then assistant is rendered, not refused.
    assert engine.render_messages([{"role": "developer", "content": "Be brief."}, *messages[1:]]) == (
        engine.render_messages(messages)
    )
    opening = [messages[0], {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Hi"}]
    assert "ASSISTANT: Hello!</s>USER: Hi ASSISTANT:" in engine.tokenizer.decode(
        engine.render_messages(opening)
    )
    with pytest.raises(BadRequest, match="system message"):
        engine.render_messages([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}])
    with pytest.raises(BadRequest, match="unsupported role"):
        engine.render_messages([{"role": "tool", "content": "a"}])


def test_foreign_model_renders_with_its_chat_template() -> None:
    from camel_chat.model.tiny import build_tiny_tokenizer
    from camel_chat.templates import get_template, to_jinja

    tokenizer = build_tiny_tokenizer(chat_template=to_jinja(get_template("chatml")))
    chat = ChatFormat(tokenizer, None, [6])
    messages = [{"role": "user", "content": "Hi!"}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert chat.render_messages(messages) == tokenizer(text, add_special_tokens=False)["input_ids"]
    assert chat.stop_token_ids == [6, tokenizer.eos_token_id] and chat.stop_strings == []
    assert not ChatFormat(build_tiny_tokenizer(), None).can_chat
    with pytest.raises(BadRequest, match="--conv-template"):
        ChatFormat(build_tiny_tokenizer(), None).render_messages(messages)


def test_count_tokens_counts_bos_once(engine: TransformersEngine) -> None:
    tok = engine.tokenizer
    assert engine.count_tokens("hello world") == len(tok("hello world")["input_ids"])
    assert engine.count_tokens("<s>hello") == len(tok("hello", add_special_tokens=False)["input_ids"]) + 1


def test_conv_template_is_fastchat_shaped(engine: TransformersEngine) -> None:
    conv = engine.conv_template()["conv"]
    assert conv["name"] == "vicuna_v1.1" and conv["roles"] == ["USER", "ASSISTANT"]
    assert conv["sep_style"] == 2 and conv["sep"] == " " and conv["sep2"] == "</s>"
    assert conv["stop_token_ids"] == [2] and conv["chat_template"]


# ------------------------------------------------------------------ text side


def test_incremental_decoder_equals_full_decode(engine: TransformersEngine) -> None:
    tok = engine.tokenizer
    ids = tok("héllo wörld, 日本語 😀 done", add_special_tokens=False)["input_ids"] + [2, 5]
    decoder = IncrementalDecoder(tok)
    pieces = [decoder.push(i) for i in ids]
    assert "".join(pieces) == decoder.text == tok.decode(ids, skip_special_tokens=True)
    assert all("\ufffd" not in p for p in pieces)


def test_stop_strings() -> None:
    stops = StopStrings(["###", "END"])
    assert stops.find("abc ### d", 0) == 4 and stops.find("abc", 0) is None
    assert stops.find("xxEN", 3) is None and stops.find("xxEND", 4) == 2
    assert stops.partial("hello #") == 1 and stops.partial("hello ##") == 2 and stops.partial("EN") == 2
    assert stops.partial("hello") == 0 and StopStrings([]).partial("x") == 0


# ------------------------------------------------------------------ generation


async def test_stream_is_cumulative_with_exact_usage(engine: TransformersEngine) -> None:
    chunks = await collect(engine, request(max_new_tokens=8))
    prompt_ids = engine.render_messages(USER)
    ids = reference_ids(engine, prompt_ids, 8)
    eos = engine.tokenizer.eos_token_id
    expected_ids = ids[: ids.index(eos) + 1] if eos in ids else ids
    for before, after in itertools.pairwise(chunks):
        assert after.text.startswith(before.text)
        assert after.usage.completion_tokens > before.usage.completion_tokens  # type: ignore[union-attr]
    last = chunks[-1]
    assert last.finish_reason == ("stop" if eos in ids else "length")
    assert last.text == engine.tokenizer.decode(expected_ids, skip_special_tokens=True)
    assert last.usage is not None
    assert last.usage.prompt_tokens == len(prompt_ids)
    assert last.usage.completion_tokens == len(expected_ids)
    assert last.usage.total_tokens == len(prompt_ids) + len(expected_ids)
    assert all(c.finish_reason is None for c in chunks[:-1])


async def test_stop_string_cuts_and_counts_exactly(engine: TransformersEngine) -> None:
    prompt_ids = engine.render_messages(USER)
    ids = reference_ids(engine, prompt_ids, 12)
    full = engine.tokenizer.decode(ids, skip_special_tokens=True)
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    assert stop.strip() and full.find(stop) > 0
    needed = next(
        k
        for k in range(1, len(ids) + 1)
        if stop in engine.tokenizer.decode(ids[:k], skip_special_tokens=True)
    )
    chunks = await collect(engine, request(max_new_tokens=12, stop=[stop]))
    last = chunks[-1]
    assert last.finish_reason == "stop" and last.text == full[: full.find(stop)]
    assert last.usage is not None and last.usage.completion_tokens == needed
    assert all(last.text.startswith(c.text) for c in chunks)  # partial stops were held back


async def test_stop_token_id_from_the_request(engine: TransformersEngine) -> None:
    prompt_ids = engine.render_messages(USER)
    ids = reference_ids(engine, prompt_ids, 10)
    position = next(i for i in range(2, len(ids)) if ids[i] not in ids[:i])
    last = (await collect(engine, request(max_new_tokens=10, stop_token_ids=[ids[position]])))[-1]
    assert last.finish_reason == "stop"
    assert last.usage is not None and last.usage.completion_tokens == position + 1
    assert last.text == engine.tokenizer.decode(ids[:position], skip_special_tokens=True)


async def test_context_length_is_checked_and_max_new_tokens_clamped(engine: TransformersEngine) -> None:
    long_prompt = "hello world " * 400
    with pytest.raises(BadRequest, match="maximum context length is 512") as info:
        await collect(engine, request(messages=None, prompt=long_prompt))
    assert info.value.code == ErrorCode.CONTEXT_OVERFLOW
    prompt = "hello world " * 10
    room = 512 - engine.count_tokens(prompt)
    last = (await collect(engine, request(messages=None, prompt=prompt, max_new_tokens=room + 50)))[-1]
    assert last.usage is not None and last.usage.total_tokens <= 512
    if last.finish_reason == "length":
        assert last.usage.completion_tokens == room
    with pytest.raises(BadRequest, match="max_new_tokens"):
        await collect(engine, request(max_new_tokens=0))
    with pytest.raises(BadRequest, match="temperature"):
        await collect(engine, request(temperature=-1))


async def test_echo_prefixes_the_prompt(engine: TransformersEngine) -> None:
    chunks = await collect(
        engine, request(messages=None, prompt="USER: hi ASSISTANT:", echo=True, max_new_tokens=3)
    )
    assert all(c.text.startswith("USER: hi ASSISTANT:") for c in chunks)


async def test_logprobs(engine: TransformersEngine) -> None:
    last = (await collect(engine, request(max_new_tokens=5, logprobs=2)))[-1]
    assert last.logprobs is not None and last.usage is not None
    n = last.usage.completion_tokens
    assert len(last.logprobs["tokens"]) == len(last.logprobs["token_logprobs"]) == n
    assert all(len(top) <= 2 for top in last.logprobs["top_logprobs"])
    for value, top in zip(last.logprobs["token_logprobs"], last.logprobs["top_logprobs"], strict=True):
        assert value <= 0 and value == pytest.approx(max(top.values()))  # greedy takes the best
    assert last.logprobs["text_offset"] == sorted(last.logprobs["text_offset"])


async def test_batched_requests_equal_the_same_requests_alone(engine: TransformersEngine) -> None:
    reqs = [
        request(
            messages=[{"role": "user", "content": "hi " * (1 + 3 * i) + f"number {i}"}], max_new_tokens=10 + i
        )
        for i in range(6)
    ]
    reqs.append(
        request(temperature=0.9, top_p=0.9, top_k=50, seed=7, repetition_penalty=1.2, max_new_tokens=10)
    )
    reqs.append(
        request(temperature=1.0, presence_penalty=0.5, frequency_penalty=0.5, seed=3, max_new_tokens=10)
    )
    alone = [(await collect(engine, r))[-1] for r in reqs]
    before = engine.stats()
    batched = await asyncio.gather(*(collect(engine, r) for r in reqs))
    after = engine.stats()
    assert [b[-1] for b in batched] == alone
    steps = after["decode_steps"] - before["decode_steps"]
    tokens = sum(c.usage.completion_tokens for c in alone)  # type: ignore[union-attr]
    assert after["max_batch"] >= len(reqs) and steps < tokens / 3  # one forward served many rows
    # The prompts that arrived together were prefilled together (left-padded), not one by one.
    passes = after["prefill_batches"] - before["prefill_batches"]
    assert passes >= 1 and after["prefills"] - before["prefills"] == len(reqs) > passes


def test_prefill_groups_respect_the_token_budget() -> None:
    from camel_chat.serve.prefill import prefill_groups

    assert prefill_groups([10, 20, 30], token_budget=100) == [[0, 1, 2]]
    assert prefill_groups([10, 40, 30], token_budget=100) == [[0, 1], [2]]  # 3 x 40 > 100
    assert prefill_groups([500, 5], token_budget=100) == [[0], [1]]  # too long: a group of its own
    assert prefill_groups([], token_budget=100) == []


async def test_a_failing_shared_prefill_falls_back_to_one_by_one(
    engine: TransformersEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import camel_chat.serve.hf_engine as hf_engine

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("out of memory (simulated)")

    reqs = [request(messages=[{"role": "user", "content": f"question {i} " * (i + 1)}]) for i in range(3)]
    alone = [(await collect(engine, r))[-1] for r in reqs]
    monkeypatch.setattr(hf_engine, "prefill_together", broken)
    before = engine.stats()
    batched = await asyncio.gather(*(collect(engine, r) for r in reqs))
    assert [b[-1] for b in batched] == alone
    assert engine.stats()["prefill_batches"] == before["prefill_batches"]


async def test_requests_join_a_running_batch(engine: TransformersEngine) -> None:
    """Newcomers (shorter and longer prompts) join at step boundaries and change nothing."""
    first = request(max_new_tokens=30)
    joiners = [
        request(messages=[{"role": "user", "content": "x"}], max_new_tokens=6),
        request(messages=[{"role": "user", "content": "a much longer question " * 8}], max_new_tokens=6),
    ]
    alone = [(await collect(engine, r))[-1] for r in [first, *joiners]]

    async def late(req: GenerateRequest, after: asyncio.Event) -> GenerateChunk:
        await after.wait()
        return (await collect(engine, req))[-1]

    started = asyncio.Event()

    async def leader() -> GenerateChunk:
        last = None
        async for chunk in engine.generate(first):
            last = chunk
            if chunk.usage is not None and chunk.usage.completion_tokens >= 3:
                started.set()
        assert last is not None
        return last

    assert alone[0].usage is not None and alone[0].usage.completion_tokens > 3
    async with asyncio.timeout(60):
        results = await asyncio.gather(leader(), *(late(r, started) for r in joiners))
    assert list(results) == alone


async def test_cancelled_stream_leaves_the_batch(engine: TransformersEngine) -> None:
    stream = engine.generate(request(max_new_tokens=400))
    async for chunk in stream:
        if chunk.usage is not None and chunk.usage.completion_tokens >= 2:
            break
    await stream.aclose()  # type: ignore[attr-defined]
    async with asyncio.timeout(10):
        while engine.stats()["running"]:
            await asyncio.sleep(0.01)
    assert (await collect(engine, request(max_new_tokens=2)))[-1].finish_reason is not None


async def test_embeddings(engine: TransformersEngine) -> None:
    texts = ["hello", "a longer text about the camel in the city"]
    vectors, tokens = await engine.embed(texts)
    assert len(vectors) == 2 and all(len(v) == engine.model.config.hidden_size for v in vectors)
    assert all(sum(x * x for x in v) == pytest.approx(1.0, abs=1e-5) for v in vectors)
    assert tokens == sum(engine.count_tokens(t) for t in texts)
    alone, _ = await engine.embed(texts[:1])  # padding in a batch changes nothing
    assert alone[0] == pytest.approx(vectors[0], abs=1e-5)
    with pytest.raises(BadRequest, match="empty"):
        await engine.embed([""])


@pytest.mark.parametrize("arch", ["qwen2"])
async def test_foreign_qwen2_model_batches_too(tmp_path: Path, arch: str) -> None:
    """A model without our metadata (tokenizer chat_template) and another architecture."""
    from camel_chat.model.tiny import save_tiny
    from camel_chat.templates import get_template, to_jinja

    path = save_tiny(tmp_path / "foreign", arch=arch, chat_template=to_jinja(get_template("chatml")))  # type: ignore[arg-type]
    eng = TransformersEngine.from_pretrained(path)
    try:
        assert eng.template_name is None
        reqs = [request(messages=[{"role": "user", "content": "q " * (i * 5 + 1)}]) for i in range(3)]
        alone = [(await collect(eng, r))[-1] for r in reqs]
        assert [b[-1] for b in await asyncio.gather(*(collect(eng, r) for r in reqs))] == alone
    finally:
        await eng.aclose()


async def test_a_row_whose_sampling_fails_fails_alone(
    engine: TransformersEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from camel_chat.serve import hf_engine
    from camel_chat.serve.errors import InternalError

    real = hf_engine.choose_tokens

    def flaky(logits: Any, rows: Any) -> Any:
        if any(row.params.temperature == 1.5 and len(row.output_ids) >= 2 for row in rows):
            raise RuntimeError("bad scores")
        return real(logits, rows)

    good = request(max_new_tokens=40)
    alone = (await collect(engine, good))[-1]
    monkeypatch.setattr(hf_engine, "choose_tokens", flaky)
    started = asyncio.Event()
    batch_sizes: list[int] = []

    async def leader() -> GenerateChunk:
        last = None
        async for chunk in engine.generate(good):
            last = chunk
            batch_sizes.append(engine.stats()["running"])
            if chunk.usage is not None and chunk.usage.completion_tokens >= 3:
                started.set()
        assert last is not None
        return last

    async def doomed() -> BaseException:
        await started.wait()  # joins the running batch
        with pytest.raises(InternalError, match="bad scores") as info:
            await collect(engine, request(temperature=1.5, max_new_tokens=12))
        return info.value

    assert alone.usage is not None and alone.usage.completion_tokens > 3  # the leader outlives the join
    async with asyncio.timeout(60):
        last, error = await asyncio.gather(leader(), doomed())
    assert last == alone  # its batch-mate's failure changed nothing for it
    assert max(batch_sizes) == 2 and isinstance(error, InternalError)
    assert engine.stats()["running"] == 0


async def test_a_row_whose_consumer_task_ended_is_dropped(engine: TransformersEngine) -> None:
    # The consumer task reads two chunks and ends without closing the generator (kept alive here,
    # so no garbage collection closes it either): the engine must still drop the row.
    stream = engine.generate(request(max_new_tokens=400))

    async def consume_two() -> None:
        async for chunk in stream:
            if chunk.usage is not None and chunk.usage.completion_tokens >= 2:
                return

    await asyncio.ensure_future(consume_two())
    async with asyncio.timeout(10):
        while engine.stats()["running"]:
            await asyncio.sleep(0.01)
    assert (await collect(engine, request(max_new_tokens=2)))[-1].finish_reason is not None
    await stream.aclose()  # type: ignore[attr-defined]


async def test_stream_interval_sends_every_nth_token_and_the_last(vicuna_dir: Path) -> None:
    every = TransformersEngine.from_pretrained(vicuna_dir, max_batch_size=4)
    third = TransformersEngine.from_pretrained(vicuna_dir, max_batch_size=4, stream_interval=3)
    try:
        req = request(max_new_tokens=11, stop_token_ids=[])
        full, sparse = await collect(every, req), await collect(third, req)
    finally:
        every.close()
        third.close()
    assert sparse[-1] == full[-1]  # the same final text, usage and finish reason
    counts = [c.usage.completion_tokens for c in sparse]  # type: ignore[union-attr]
    assert counts[0] == 1 and counts[-1] == full[-1].usage.completion_tokens  # type: ignore[union-attr]
    assert all(b - a == 3 for a, b in itertools.pairwise(counts[:-1]))  # the last may be closer
    assert len(sparse) < len(full) or len(full) <= 2
