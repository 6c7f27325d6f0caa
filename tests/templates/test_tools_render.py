"""Templates carry tools: what each tool format writes, what is trained, and the rules.

The chatml tool layout is checked byte for byte against a Qwen2.5-style template (test
data, tests/templates/data/qwen2_5_tools.jinja); the kagent layout against the KAgentSys
prompt/response format as the KAgentInstruct sample records hold it."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import pytest
from sample_conversations import random_tool_conversation, to_openai

from camel_chat.conversation import Conversation, ConversationError, Message, Tool, ToolCall, from_openai
from camel_chat.errors import CamelChatError
from camel_chat.templates import (
    SpecialTokens,
    generation_prompt,
    get_template,
    list_templates,
    render,
    render_text,
)
from camel_chat.templates.tool_format import parse_tool_format

REPO = Path(__file__).resolve().parents[2]
TOOL_TEMPLATES = [n for n in list_templates() if get_template(n).tools is not None]
WEATHER = Tool(
    "weather", "Weather for a city", {"type": "object", "properties": {"city": {"type": "string"}}}
)
RESULT = "RESULT-MARKER 21°C"


def _loop(content: str = "Let me check.", calls: int = 1) -> Conversation:
    tool_calls = tuple(ToolCall(f"c{k}", "weather", {"city": ["杭州", "Rome"][k % 2]}) for k in range(calls))
    results = tuple(Message("tool", f"{RESULT} {k}", tool_call_id=f"c{k}") for k in range(calls))
    return Conversation(
        (
            Message("user", "Weather?"),
            Message("assistant", content, tool_calls),
            *results,
            Message("assistant", "Sunny."),
        ),
        system="S",
        tools=(WEATHER,),
    )


def test_chatml_tools_match_a_qwen2_5_style_template(qwen2_tokenizer: Any) -> None:
    qwen = (Path(__file__).parent / "data" / "qwen2_5_tools.jinja").read_text(encoding="utf-8")
    special = SpecialTokens.of(qwen2_tokenizer)
    rng = random.Random(5)
    for i in range(60):
        generation = i % 2 == 1
        conv = random_tool_conversation(rng, end_with="user" if generation else "assistant")
        # Qwen's default system prompt differs from ours; with a system prompt they agree.
        conv = dataclasses.replace(conv, system=conv.system or "S")
        messages, tools = to_openai(conv), [t.to_openai() for t in conv.tools]
        got = qwen2_tokenizer.apply_chat_template(
            messages, tools=tools, chat_template=qwen, tokenize=False, add_generation_prompt=generation
        )
        assert got == render_text(
            get_template("chatml"), conv, add_generation_prompt=generation, special=special
        )


def test_kagent_writes_the_kagentsys_commands_and_task_json() -> None:
    records = json.loads((REPO / "samples/datasets/kwaiagent_train_data.json").read_text(encoding="utf-8"))
    record = next(r for r in records if r["source"] == "kwai-agent")
    functions = [json.loads(f) for f in record["functions"]]
    tools = tuple(Tool(f["name"], f.get("description"), f.get("parameters")) for f in functions)
    step = record["llm_prompt_response"][0]
    task = json.loads(step["output"])
    call = ToolCall("c0", task["command"]["name"], task["command"]["args"])
    conv = Conversation(
        (Message("user", record["query"]), Message("assistant", task["task_name"], (call,))), tools=tools
    )
    segments = render(get_template("kagent"), conv)
    # KAgentSys numbers each function's JSON ("1:{...}") under "Commands:".
    commands = "Commands:\n" + "".join(
        f"{k}:{json.dumps(f, ensure_ascii=False)}\n" for k, f in enumerate(functions, 1)
    )
    assert commands in segments[0].text
    # The trained reply is the data set's output, byte for byte, then the end of turn.
    assert [s.text for s in segments if s.trainable] == [step["output"] + "<|im_end|>"]


@pytest.mark.parametrize("name", TOOL_TEMPLATES)
def test_calls_are_trained_definitions_and_results_never(name: str) -> None:
    template = get_template(name)
    conv = _loop(calls=min(2, template.tools.max_calls or 2))  # type: ignore[union-attr]
    segments = render(template, conv)
    trained = [s for s in segments if s.trainable]
    assert [s.message for s in trained] == [1, len(conv.messages) - 1]
    call_text = trained[0].text
    assert '"weather"' in call_text and "杭州" in call_text
    assert call_text.endswith(template.trained_suffix)  # the call's end marker is trained
    assert all(RESULT not in s.text and "Weather for a city" not in s.text for s in trained)
    assert any(RESULT in s.text for s in segments if not s.trainable)
    assert "Weather for a city" in "".join(s.text for s in segments if s.message is None)


@pytest.mark.parametrize("name", TOOL_TEMPLATES)
def test_serving_prompt_after_results_is_the_training_render_minus_the_answer(name: str) -> None:
    template = get_template(name)
    full = _loop()
    prompt = render_text(
        template, dataclasses.replace(full, messages=full.messages[:-1]), add_generation_prompt=True
    )
    train = render_text(template, full)
    assert train.startswith(prompt) and prompt.endswith(generation_prompt(template))
    assert train[len(prompt) :].startswith("Sunny.")


def test_consecutive_results_share_one_turn_in_chatml_only() -> None:
    chatml = render_text(get_template("chatml"), _loop(calls=2))
    assert chatml.count("<|im_start|>user") == 2  # the question, then both results together
    assert "</tool_response>\n<tool_response>" in chatml
    llama = render_text(get_template("llama-3"), _loop(calls=2))
    assert llama.count("<|start_header_id|>ipython<|end_header_id|>") == 2


def test_tools_without_a_tool_format_and_too_many_calls_are_named() -> None:
    with pytest.raises(ConversationError, match=r"tools-unsupported.*chatml") as info:
        render(get_template("vicuna_v1.1"), _loop())
    assert info.value.rule == "tools-unsupported"
    with pytest.raises(ConversationError) as info:
        render(get_template("kagent"), _loop(calls=2))
    assert (info.value.rule, info.value.index) == ("too-many-tool-calls", 1)


def test_user_text_that_looks_like_a_placeholder_stays_verbatim() -> None:
    conv = from_openai(
        [
            {"role": "system", "content": "{tools} {system} {content}"},
            {"role": "user", "content": "{name} {arguments}"},
            {"role": "assistant", "content": "{content}"},
        ],
        tools=[WEATHER.to_openai()],
    )
    for name in TOOL_TEMPLATES:
        text = render_text(get_template(name), conv)
        assert "{tools} {system} {content}" in text and "{name} {arguments}" in text


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ("x", "must be a table"),
        (
            {
                "parser": "p",
                "system": "{system}",
                "definition": "",
                "call": "{name}{arguments}",
                "result": "{content}",
            },
            "tools.system",
        ),
        (
            {
                "parser": "p",
                "system": "{tools}",
                "definition": "{name}",
                "call": "{name}{arguments}",
                "result": "{content}",
            },
            "tools.definition",
        ),
        (
            {"parser": "p", "system": "{tools}", "definition": "", "call": "{name}", "result": "{content}"},
            "tools.call",
        ),
        (
            {
                "parser": "p",
                "system": "{tools}",
                "definition": "",
                "call": "{name}{arguments}",
                "result": "x",
            },
            "tools.result",
        ),
        (
            {
                "parser": "p",
                "system": "{tools}",
                "definition": "",
                "call": "{name}{arguments}{content}",
                "result": "{content}",
            },
            "max_calls = 1",
        ),
        ({"system": "{tools}"}, "tools.parser"),
    ],
)
def test_bad_tool_tables_name_the_template_and_field(raw: Any, field: str) -> None:
    with pytest.raises(CamelChatError, match="template 'x'") as info:
        parse_tool_format("x", raw)
    assert field in str(info.value)
