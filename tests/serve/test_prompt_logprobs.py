"""Prompt logprobs (`/v1/completions` with `echo` + `logprobs`) equal a direct transformers forward
pass on the same tiny checkpoint (to 1e-4), through real HTTP: controller, model_worker and the
OpenAI API server as processes on free ports, driven by the official `openai` client and by raw
httpx with token-id prompts. Plus the batched scoring forward pass against one pass per prompt."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from api_stack import API_KEY, api_stack
from serving_stack import Stack, write_checkpoint

pytestmark = pytest.mark.slow
MODEL = "Tiny-Scorer"
PROMPT = "Question: what do bees make?\nAnswer: honey"
TOL = 1e-4


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("prompt-logprobs")
    checkpoint = write_checkpoint(root / "tiny-vicuna", context_length=256)
    with api_stack(root, checkpoint, MODEL) as running:
        yield running


@pytest.fixture(scope="module")
def reference(stack: Stack) -> Any:
    """(tokenizer, function ids -> [len(ids), vocab] log_softmax of one plain forward pass)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(stack.checkpoint)
    model = AutoModelForCausalLM.from_pretrained(stack.checkpoint, dtype=torch.float32).eval()

    def logprobs(ids: list[int]) -> Any:
        with torch.inference_mode():
            return torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)

    return tokenizer, logprobs


def expected(logprobs: Any, ids: list[int]) -> list[float]:
    return [float(logprobs[i, ids[i + 1]]) for i in range(len(ids) - 1)]


def assert_prompt_part(lp: dict[str, Any], ids: list[int], reference: Any) -> None:
    """The first len(ids) entries are the prompt's: names, null first, values, tops, offsets."""
    tokenizer, forward = reference
    n = len(ids)
    assert lp["tokens"][:n] == [tokenizer.decode([t]) for t in ids]
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    got = lp["token_logprobs"][1:n]
    want = expected(forward(ids), ids)
    assert all(math.isfinite(g) and g < 0 for g in got)
    assert max(abs(g - w) for g, w in zip(got, want, strict=True)) < TOL
    for name, value, top in zip(lp["tokens"][1:n], got, lp["top_logprobs"][1:n], strict=True):
        assert top[name] == pytest.approx(value, abs=1e-6)  # the prompt token is among its tops
        assert max(top.values()) >= value
    offsets = lp["text_offset"][:n]
    assert offsets[0] == 0 and offsets == sorted(offsets)


def test_echo_max_tokens_0_with_the_official_client(stack: Stack, reference: Any) -> None:
    tokenizer, _ = reference
    client = openai.OpenAI(base_url=f"{stack.api}/v1", api_key=API_KEY, max_retries=0, timeout=60)
    out = client.completions.create(model=MODEL, prompt=PROMPT, echo=True, logprobs=3, max_tokens=0)
    (choice,) = out.choices
    ids = tokenizer(PROMPT)["input_ids"]
    assert choice.text == PROMPT and choice.finish_reason == "length"
    assert out.usage is not None and (out.usage.prompt_tokens, out.usage.completion_tokens) == (len(ids), 0)
    lp = choice.logprobs
    assert lp is not None and len(lp.tokens or []) == len(ids)
    data = lp.model_dump()
    assert_prompt_part(data, ids, reference)
    assert all(len(top) <= 4 for top in data["top_logprobs"][1:])  # 3 alternatives + the token
    # Offsets point into the echoed text: each token's text starts where its offset says.
    for token, offset in zip(data["tokens"], data["text_offset"], strict=True):
        assert choice.text[offset:].startswith(token)


def test_echo_then_generated_tokens(stack: Stack, reference: Any) -> None:
    tokenizer, forward = reference
    client = openai.OpenAI(base_url=f"{stack.api}/v1", api_key=API_KEY, max_retries=0, timeout=60)
    out = client.completions.create(
        model=MODEL, prompt=PROMPT, echo=True, logprobs=1, max_tokens=3, temperature=0
    )
    (choice,) = out.choices
    ids = tokenizer(PROMPT)["input_ids"]
    data = choice.logprobs.model_dump() if choice.logprobs else {}
    assert_prompt_part(data, ids, reference)
    generated = out.usage.completion_tokens if out.usage else 0
    assert 1 <= generated <= 3 and len(data["tokens"]) == len(ids) + generated
    # The first generated token is the greedy one after the prompt, with its forward-pass logprob.
    last = forward(ids)[-1]
    first = int(last.argmax())
    assert data["tokens"][len(ids)] == tokenizer.decode([first])
    assert data["token_logprobs"][len(ids)] == pytest.approx(float(last[first]), abs=TOL)
    assert choice.text.startswith(PROMPT)


def test_token_id_prompts_over_raw_http(stack: Stack, reference: Any) -> None:
    """lm-evaluation-harness's request: token-id lists, echo, logprobs 1, max_tokens 1."""
    tokenizer, _ = reference
    prompts = [tokenizer(p)["input_ids"] for p in (PROMPT, "the cat sat on the mat", "hello")]
    headers = {"Authorization": f"Bearer {API_KEY}"}
    body = {"model": MODEL, "prompt": prompts, "echo": True, "logprobs": 1, "max_tokens": 1, "temperature": 0}
    r = httpx.post(f"{stack.api}/v1/completions", json=body, headers=headers, timeout=60, trust_env=False)
    assert r.status_code == 200, r.text
    choices = sorted(r.json()["choices"], key=lambda c: c["index"])
    assert len(choices) == 3
    for ids, choice in zip(prompts, choices, strict=True):
        assert len(choice["logprobs"]["tokens"]) == len(ids) + 1  # verbatim ids, nothing added
        assert_prompt_part(choice["logprobs"], ids, reference)
        assert choice["text"].startswith(tokenizer.decode(ids, skip_special_tokens=True))
    assert r.json()["usage"]["prompt_tokens"] == sum(len(p) for p in prompts)

    single = {**body, "prompt": prompts[1], "max_tokens": 0}
    r = httpx.post(f"{stack.api}/v1/completions", json=single, headers=headers, timeout=60, trust_env=False)
    assert r.status_code == 200, r.text
    assert_prompt_part(r.json()["choices"][0]["logprobs"], prompts[1], reference)

    # Verbatim: two BOS and a split word come back as sent (re-encoding text would change them).
    odd = [tokenizer.bos_token_id, tokenizer.bos_token_id, *tokenizer("hello")["input_ids"]]
    url = f"{stack.api}/v1/completions"
    r = httpx.post(url, json={**single, "prompt": odd}, headers=headers, timeout=60, trust_env=False)
    assert r.json()["choices"][0]["logprobs"]["tokens"] == [tokenizer.decode([t]) for t in odd]
    assert_prompt_part(r.json()["choices"][0]["logprobs"], odd, reference)

    bad = {**body, "prompt": [[1, 2, 10**6]]}
    r = httpx.post(f"{stack.api}/v1/completions", json=bad, headers=headers, timeout=60, trust_env=False)
    assert r.status_code == 400 and "vocabulary" in r.json()["error"]["message"]


def test_batched_scoring_equals_one_pass_per_prompt(tmp_path: Path) -> None:
    """`score_prompts` runs prompts of different lengths in ONE right-padded forward pass; each
    row's prompt logprobs equal its own unpadded pass (and the engine thread is not involved)."""
    import torch

    from camel_chat.serve.detokenize import IncrementalDecoder, StopStrings
    from camel_chat.serve.engine import GenerationLimits
    from camel_chat.serve.prompt_scoring import score_groups, score_prompts
    from camel_chat.serve.request_state import RequestState
    from camel_chat.serve.sampling import SamplingParams

    checkpoint = write_checkpoint(tmp_path / "tiny")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32).eval()
    texts = ["a b c d e f g h i j k", "hello", "the cat sat on the mat"]
    params = SamplingParams(temperature=0, logprobs=2)
    seqs = []
    for text, new in zip(texts, (0, 1, 1), strict=True):
        ids = tokenizer(text)["input_ids"]
        state = RequestState(
            ids,
            params,
            GenerationLimits(len(ids), new),
            StopStrings([]),
            set(),
            IncrementalDecoder(tokenizer),
            wants_prompt_logprobs=True,
        )
        seqs.append(state)
    assert score_groups([len(s.prompt_ids) for s in seqs], len(tokenizer)) == [[0, 1, 2]]
    calls = []
    original = model.forward
    model.forward = lambda *a, **kw: calls.append(kw["input_ids"].shape) or original(*a, **kw)  # type: ignore[method-assign]
    with torch.inference_mode():
        drawn = score_prompts(model, seqs, "cpu", tokenizer, lambda p: None)
        model.forward = original  # type: ignore[method-assign]
        assert calls == [torch.Size([3, max(len(s.prompt_ids) for s in seqs)])] and drawn == 2
        for seq in seqs:
            alone = torch.log_softmax(model(torch.tensor([seq.prompt_ids])).logits[0], dim=-1)
            assert seq.prompt_logprobs is not None
            got = seq.prompt_logprobs.token_logprobs[1:]
            want = expected(alone, seq.prompt_ids)
            assert max(abs(g - w) for g, w in zip(got, want, strict=True)) < TOL
            assert seq.finish_reason == "length" and len(seq.output_ids) == seq.max_new_tokens
            if seq.output_ids:
                assert seq.output_ids[0] == int(alone[-1].argmax())


def test_streamed_echo_logprobs_add_up_to_the_whole(stack: Stack, reference: Any) -> None:
    """Streamed, the prompt's entries come in the first chunk; all chunks together equal the
    non-streamed answer (greedy), prompt and generated tokens alike."""
    tokenizer, _ = reference
    client = openai.OpenAI(base_url=f"{stack.api}/v1", api_key=API_KEY, max_retries=0, timeout=60)
    ids = tokenizer(PROMPT)["input_ids"]
    args = {"model": MODEL, "prompt": [ids], "echo": True, "logprobs": 2, "max_tokens": 3, "temperature": 0}
    whole = client.completions.create(**args).choices[0]
    chunks = [c.choices[0] for c in client.completions.create(**args, stream=True) if c.choices]
    first = chunks[0].logprobs
    assert first is not None and (first.tokens or [])[: len(ids)] == [tokenizer.decode([t]) for t in ids]
    assert "".join(c.text for c in chunks) == whole.text
    assert whole.logprobs is not None
    for key in ("tokens", "token_logprobs", "top_logprobs", "text_offset"):
        streamed = [v for c in chunks if c.logprobs for v in (getattr(c.logprobs, key) or [])]
        assert streamed == getattr(whole.logprobs, key), key


def test_chunked_log_softmax_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The positions are scored a slice at a time; any slice size gives the same entries."""
    import torch

    from camel_chat.model.tiny import build_tiny_tokenizer
    from camel_chat.serve import prompt_scoring

    tokenizer = build_tiny_tokenizer()
    ids = tokenizer("the cat sat on the mat, " * 8)["input_ids"]
    logits = torch.randn(len(ids), len(tokenizer), generator=torch.Generator().manual_seed(0))
    whole = prompt_scoring.PromptLogprobs.compute(logits, ids, 2, tokenizer)
    monkeypatch.setattr(prompt_scoring, "LOGPROB_CHUNK", 3)
    assert prompt_scoring.PromptLogprobs.compute(logits, ids, 2, tokenizer) == whole
    assert len(whole.tokens) == len(ids) > 3 * 4
    reference = torch.log_softmax(logits, dim=-1)
    assert whole.token_logprobs[1:] == pytest.approx(
        [float(reference[i, ids[i + 1]]) for i in range(len(ids) - 1)]
    )
