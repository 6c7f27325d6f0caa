"""The Jinja export renders exactly what our renderer renders, through transformers'
own `apply_chat_template`, on many awkward conversations, with and without tools."""

from __future__ import annotations

import random
from typing import Any

import pytest
from sample_conversations import random_conversation, random_tool_conversation, to_openai

from camel_chat.templates import SpecialTokens, get_template, list_templates, render, render_text, to_jinja


@pytest.mark.parametrize("name", list_templates())
def test_jinja_export_equals_renderer(name: str, tiny_tokenizer: Any) -> None:
    template = get_template(name)
    jinja = to_jinja(template)
    special = SpecialTokens.of(tiny_tokenizer)
    rng = random.Random(name)
    for i in range(80):
        generation = i % 2 == 1
        conv = random_conversation(rng, end_with="user" if generation else "assistant")
        expected = render_text(template, conv, add_generation_prompt=generation, special=special)
        got = tiny_tokenizer.apply_chat_template(
            to_openai(conv), chat_template=jinja, tokenize=False, add_generation_prompt=generation
        )
        assert got == expected, (name, conv)


@pytest.mark.parametrize("name", ["vicuna_v1.1", "chatml"])
def test_jinja_generation_markers_cover_the_trained_text(name: str, tiny_tokenizer: Any) -> None:
    template = get_template(name)
    conv = random_conversation(random.Random(7))
    out = tiny_tokenizer.apply_chat_template(
        to_openai(conv),
        chat_template=to_jinja(template),
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
    )
    ids = [i for i, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    trained = "".join(
        s.text for s in render(template, conv, special=SpecialTokens.of(tiny_tokenizer)) if s.trainable
    )
    assert tiny_tokenizer.decode(ids) == trained


TOOL_TEMPLATES = [name for name in list_templates() if get_template(name).tools is not None]


def test_the_tool_templates_are_the_three_formats() -> None:
    assert {"chatml", "llama-3", "kagent"} <= set(TOOL_TEMPLATES)


@pytest.mark.parametrize("name", TOOL_TEMPLATES)
def test_jinja_export_with_tools_equals_renderer(name: str, tiny_tokenizer: Any) -> None:
    template = get_template(name)
    assert template.tools is not None
    jinja = to_jinja(template)
    special = SpecialTokens.of(tiny_tokenizer)
    rng = random.Random("tools-" + name)
    for i in range(120):
        generation = i % 2 == 1
        conv = random_tool_conversation(
            rng, end_with="user" if generation else "assistant", max_calls=template.tools.max_calls or 3
        )
        expected = render_text(template, conv, add_generation_prompt=generation, special=special)
        got = tiny_tokenizer.apply_chat_template(
            to_openai(conv),
            tools=[t.to_openai() for t in conv.tools],
            chat_template=jinja,
            tokenize=False,
            add_generation_prompt=generation,
        )
        assert got == expected, (name, conv)


@pytest.mark.parametrize("name", TOOL_TEMPLATES)
def test_jinja_generation_markers_cover_calls_and_never_results(name: str, tiny_tokenizer: Any) -> None:
    template = get_template(name)
    assert template.tools is not None
    rng = random.Random(11)
    conv = random_tool_conversation(rng, max_calls=template.tools.max_calls or 3)
    while not any(m.tool_calls for m in conv.messages):
        conv = random_tool_conversation(rng, max_calls=template.tools.max_calls or 3)
    out = tiny_tokenizer.apply_chat_template(
        to_openai(conv),
        tools=[t.to_openai() for t in conv.tools],
        chat_template=to_jinja(template),
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
    )
    ids = [i for i, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    trained = "".join(
        s.text for s in render(template, conv, special=SpecialTokens.of(tiny_tokenizer)) if s.trainable
    )
    assert tiny_tokenizer.decode(ids) == trained


def test_templates_without_tools_refuse_tools_in_jinja_too(tiny_tokenizer: Any) -> None:
    tool = {"type": "function", "function": {"name": "f"}}
    with pytest.raises(Exception, match="no tool format"):
        tiny_tokenizer.apply_chat_template(
            [{"role": "user", "content": "q"}],
            tools=[tool],
            chat_template=to_jinja(get_template("vicuna_v1.1")),
            tokenize=False,
        )
