"""A checkpoint without any chat template (no camel_chat metadata, no tokenizer chat_template,
a name that is not camel/vicuna) is served with a named fallback: `vicuna_v1.1` for LLaMA-family
models, FastChat's `one_shot` for others; one warning at start names it; the worker's
`/worker_get_conv_template` and the API's `/v1/models` show it; `--conv-template` still wins.

The first test runs the real processes (controller, model_worker, OpenAI API server) and the
official `openai` client; the others build the engine in-process."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from api_stack import API_KEY, api_stack
from serving_stack import Stack

from camel_chat.serve.engine import choose_template, resolve_template
from camel_chat.serve.hf_engine import TransformersEngine

MODEL = "Plain-Llama"
WARNING = "has no chat template"


def plain_checkpoint(out: Path, arch: str = "llama") -> Path:
    """A tiny random model whose tokenizer has no chat_template and which has no metadata."""
    from transformers import AutoTokenizer

    from camel_chat.model.tiny import save_tiny

    save_tiny(out, arch=arch)  # type: ignore[arg-type]
    assert AutoTokenizer.from_pretrained(out).chat_template is None
    assert not (out / "camel_chat.json").exists()
    return out


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("fallback")
    with api_stack(root, plain_checkpoint(root / "plain-llama"), MODEL) as running:
        yield running


@pytest.mark.slow
def test_served_with_the_vicuna_fallback(stack: Stack) -> None:
    worker_log = (stack.checkpoint.parent / "worker.log").read_text(errors="replace")
    warnings = [line for line in worker_log.splitlines() if WARNING in line]
    assert len(warnings) == 1 and "'vicuna_v1.1'" in warnings[0] and "'llama'" in warnings[0]

    conv = httpx.post(f"{stack.worker}/worker_get_conv_template", json={}, timeout=10, trust_env=False)
    body = conv.json()["conv"]
    assert (body["name"], body["template"], body["template_source"]) == (
        "vicuna_v1.1",
        "vicuna_v1.1",
        "fallback",
    )
    assert body["roles"] == ["USER", "ASSISTANT"]  # FastChat's vicuna_v1.1 fields

    client = openai.OpenAI(base_url=f"{stack.api}/v1", api_key=API_KEY, max_retries=0, timeout=60)
    (card,) = [m for m in client.models.list().data if m.id == MODEL]
    assert card.model_dump()["conv_template"] == "vicuna_v1.1"
    assert card.model_dump()["conv_template_source"] == "fallback"
    assert client.models.retrieve(MODEL).model_dump()["conv_template"] == "vicuna_v1.1"

    # The chat request that was a 400 ("start the worker with --conv-template") is served, and the
    # prompt it counted is the vicuna_v1.1 rendering of the messages.
    messages = [{"role": "user", "content": "Say hello."}]
    chat = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=4, temperature=0)
    assert chat.choices[0].finish_reason in ("stop", "length") and chat.usage is not None
    from transformers import AutoTokenizer

    from camel_chat.serve.engine import ChatFormat

    vicuna = ChatFormat(AutoTokenizer.from_pretrained(stack.checkpoint), "vicuna_v1.1")
    assert chat.usage.prompt_tokens == len(vicuna.render_messages(messages))


def test_conv_template_still_wins_and_other_families_get_one_shot(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    llama = plain_checkpoint(tmp_path / "plain-llama")
    with caplog.at_level(logging.WARNING, logger="camel_chat.serve.engine"):
        engine = TransformersEngine.from_pretrained(llama, conv_template="chatml")
    try:
        conv = engine.conv_template()["conv"]
        assert (conv["name"], conv["template_source"]) == ("chatml", "override")
        assert not [r for r in caplog.records if WARNING in r.getMessage()]  # no fallback, no warning
    finally:
        engine.close()

    qwen = plain_checkpoint(tmp_path / "plain-qwen2", arch="qwen2")
    from transformers import AutoTokenizer

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="camel_chat.serve.engine"):
        assert choose_template(qwen, AutoTokenizer.from_pretrained(qwen)) == ("one_shot", "fallback")
    (record,) = [r for r in caplog.records if WARNING in r.getMessage()]
    assert "'one_shot'" in record.getMessage() and "'qwen2'" in record.getMessage()
    # Without a config there is nothing to go by: no template (chat stays a 400 naming the flag).
    assert resolve_template(tmp_path / "nothing-here", AutoTokenizer.from_pretrained(llama)) is None
