"""Sampling defaults: a request that leaves temperature/top_p/top_k/repetition_penalty out gets the
checkpoint's generation_config.json values (as vLLM does), else FastChat's; explicit values win."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest
from transformers import GenerationConfig

from camel_chat.serve.openai_routes import _sampling, _worker_payload
from camel_chat.serve.protocol import ChatCompletionRequest, GenerateRequest
from camel_chat.serve.sampling import SamplingDefaults, SamplingParams


def test_defaults_from_generation_config() -> None:
    smol = GenerationConfig(do_sample=True, temperature=0.2, top_p=0.9)
    assert SamplingDefaults.from_generation_config(smol) == SamplingDefaults(temperature=0.2, top_p=0.9)
    # transformers' own defaults (temperature 1.0, top_k 50) are not "set by the checkpoint".
    assert SamplingDefaults.from_generation_config(GenerationConfig()) == SamplingDefaults()
    assert SamplingDefaults.from_generation_config(None) == SamplingDefaults()
    from_json = SamplingDefaults.from_generation_config({"top_k": 0, "repetition_penalty": 1.1})
    assert from_json == SamplingDefaults(top_k=-1, repetition_penalty=1.1)
    cli = SamplingDefaults.from_generation_config(GenerationConfig(), SamplingDefaults(temperature=0.7))
    assert cli.temperature == 0.7
    assert SamplingDefaults.from_generation_config(smol, SamplingDefaults(temperature=0.7)).temperature == 0.2
    # Which values the checkpoint set, so the web UI keeps its own defaults for the rest.
    smol_defaults = SamplingDefaults.from_generation_config(smol)
    assert smol_defaults.configured_values() == {"temperature": 0.2, "top_p": 0.9}
    assert cli.configured_values() == {} and SamplingDefaults().configured_values() == {}
    assert from_json.configured == ("top_k", "repetition_penalty")


def test_request_values_win_over_defaults() -> None:
    defaults = SamplingDefaults(temperature=0.2, top_p=0.9, top_k=40, repetition_penalty=1.1)
    left_out = SamplingParams.from_request(GenerateRequest(prompt="hi"), defaults)
    assert (left_out.temperature, left_out.top_p, left_out.top_k, left_out.repetition_penalty) == (
        0.2, 0.9, 40, 1.1,
    )  # fmt: skip
    given = SamplingParams.from_request(GenerateRequest(prompt="hi", temperature=0, top_k=-1), defaults)
    assert given.greedy and given.top_k == -1 and given.top_p == 0.9


def test_openai_request_without_sampling_fields_sends_none_to_the_worker() -> None:
    req = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "hi"}])
    payload = _worker_payload(_sampling(req, 8), None, 0)
    assert not {"temperature", "top_p", "top_k", "repetition_penalty"} & set(payload)
    req = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "hi"}], temperature=0)
    assert _worker_payload(_sampling(req, 8), None, 0)["temperature"] == 0


@pytest.mark.parametrize("top_k_one", [True, False])
def test_engine_applies_the_checkpoint_generation_config(tmp_path: Path, top_k_one: bool) -> None:
    """A checkpoint whose generation_config says top_k=1 samples greedily whatever the seed;
    without it the same requests (temperature 1.0 by default) differ across seeds."""
    from camel_chat.model.checkpoint import write_template_files
    from camel_chat.model.loader import load_tokenizer
    from camel_chat.model.tiny import save_tiny
    from camel_chat.serve.hf_engine import TransformersEngine

    out = save_tiny(tmp_path / "tiny", arch="llama")
    model = None
    if top_k_one:
        model = SimpleNamespace(generation_config=GenerationConfig(do_sample=True, top_k=1))
    write_template_files(out, load_tokenizer(out, ensure_pad=False), "vicuna_v1.1", model=model)
    engine = TransformersEngine.from_pretrained(out)
    assert engine.sampling_defaults.top_k == (1 if top_k_one else -1)

    async def texts() -> list[str]:
        messages = [{"role": "user", "content": "hello there"}]
        out = []
        for seed in range(4):
            req = GenerateRequest(messages=messages, max_new_tokens=12, echo=False, seed=seed)
            chunks = [chunk async for chunk in engine.generate(req)]
            out.append(chunks[-1].text)
        greedy = GenerateRequest(messages=messages, max_new_tokens=12, echo=False, temperature=0)
        out.append([chunk async for chunk in engine.generate(greedy)][-1].text)
        return out

    try:
        results = asyncio.run(texts())
    finally:
        engine.close()
    if top_k_one:
        assert len(set(results)) == 1  # every seeded draw equals the greedy answer
    else:
        assert len(set(results[:4])) > 1


def test_cli_direct_mode_default_temperature() -> None:
    from camel_chat.serve.cli import DirectBackend

    for config, expected in ((None, 0.7), (GenerationConfig(do_sample=True, temperature=0.2), 0.2)):
        engine = SimpleNamespace(template_name=None, model=SimpleNamespace(generation_config=config))
        backend = DirectBackend(engine)
        try:
            assert engine.sampling_defaults.temperature == expected
        finally:
            backend.loop.call_soon_threadsafe(backend.loop.stop)
            backend._thread.join(5)
