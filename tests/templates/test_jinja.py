"""The Jinja export renders exactly what our renderer renders, through transformers'
own `apply_chat_template`, on many awkward conversations, with and without tools."""

from __future__ import annotations

import random
from typing import Any

import pytest
from sample_conversations import random_conversation, random_tool_conversation, to_openai

from camel_chat.conversation import Conversation
from camel_chat.templates import SpecialTokens, get_template, list_templates, render, render_text, to_jinja

TOOL_TEMPLATES = [name for name in list_templates() if get_template(name).tools is not None]


def apply(tokenizer: Any, name: str, conv: Conversation, **kw: Any) -> Any:
    """Render `conv` through transformers with the exported template (and its tools)."""
    tools = [t.to_openai() for t in conv.tools] or None
    return tokenizer.apply_chat_template(
        to_openai(conv), tools=tools, chat_template=to_jinja(get_template(name)), **kw
    )


def assert_equal_renderings(name: str, tokenizer: Any, convs: list[tuple[Conversation, bool]]) -> None:
    template = get_template(name)
    special = SpecialTokens.of(tokenizer)
    for conv, generation in convs:
        expected = render_text(template, conv, add_generation_prompt=generation, special=special)
        got = apply(tokenizer, name, conv, tokenize=False, add_generation_prompt=generation)
        assert got == expected, (name, conv)


def assert_marks_cover_trained_text(name: str, tokenizer: Any, conv: Conversation) -> None:
    out = apply(tokenizer, name, conv, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids = [i for i, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    segments = render(get_template(name), conv, special=SpecialTokens.of(tokenizer))
    assert tokenizer.decode(ids) == "".join(s.text for s in segments if s.trainable)


@pytest.mark.parametrize("name", list_templates())
def test_jinja_export_equals_renderer(name: str, tiny_tokenizer: Any) -> None:
    rng = random.Random(name)
    convs = [
        (random_conversation(rng, end_with="user" if i % 2 else "assistant"), i % 2 == 1) for i in range(80)
    ]
    assert_equal_renderings(name, tiny_tokenizer, convs)


@pytest.mark.parametrize("name", ["vicuna_v1.1", "chatml"])
def test_jinja_generation_markers_cover_the_trained_text(name: str, tiny_tokenizer: Any) -> None:
    assert_marks_cover_trained_text(name, tiny_tokenizer, random_conversation(random.Random(7)))


def test_the_tool_templates_are_the_three_formats() -> None:
    assert {"chatml", "llama-3", "kagent"} <= set(TOOL_TEMPLATES)


def _tool_conversations(name: str, n: int) -> list[tuple[Conversation, bool]]:
    tools = get_template(name).tools
    assert tools is not None
    rng = random.Random("tools-" + name)
    return [
        (
            random_tool_conversation(
                rng, end_with="user" if i % 2 else "assistant", max_calls=tools.max_calls or 3
            ),
            i % 2 == 1,
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("name", TOOL_TEMPLATES)
def test_jinja_export_with_tools_equals_renderer(name: str, tiny_tokenizer: Any) -> None:
    assert_equal_renderings(name, tiny_tokenizer, _tool_conversations(name, 120))


@pytest.mark.parametrize("name", TOOL_TEMPLATES)
def test_jinja_generation_markers_cover_calls_and_never_results(name: str, tiny_tokenizer: Any) -> None:
    convs = [c for c, generation in _tool_conversations(name, 20) if not generation]
    conv = next(c for c in convs if any(m.tool_calls for m in c.messages))
    assert_marks_cover_trained_text(name, tiny_tokenizer, conv)


def test_templates_without_tools_refuse_tools_in_jinja_too(tiny_tokenizer: Any) -> None:
    with pytest.raises(Exception, match="no tool format"):
        tiny_tokenizer.apply_chat_template(
            [{"role": "user", "content": "q"}],
            tools=[{"type": "function", "function": {"name": "f"}}],
            chat_template=to_jinja(get_template("vicuna_v1.1")),
            tokenize=False,
        )
