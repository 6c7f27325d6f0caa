"""Every parser on golden outputs, fed whole, character by character, and split at every
byte boundary through an incremental UTF-8 decoder (what a detokenizer hands a server).

The outputs are written by us in the shape each family emits (Qwen2.5/Hermes, Llama 3.x,
KAgentLMs); the kagent set also holds the outputs of the KAgentInstruct sample records.
Streaming must agree with the non-streamed parse exactly: content deltas concatenate to
the content, each call is announced once with a stable id before its argument fragments,
and the fragments concatenate to the arguments."""

from __future__ import annotations

import codecs
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from camel_chat.errors import CamelChatError
from camel_chat.templates import get_template, list_templates
from camel_chat.tool_parsers import (
    ArgumentsDelta,
    CallStart,
    ContentDelta,
    Delta,
    ParsedReply,
    list_parsers,
    parse,
    stream,
)

REPO = Path(__file__).resolve().parents[2]
Calls = list[tuple[str, Any]]

# (parser, output, content, [(name, arguments object)], complete)
GOLDEN: list[tuple[str, str, str | None, Calls]] = [
    (
        "hermes",
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
        None,
        [("get_weather", {"city": "Paris"})],
    ),
    (
        "hermes",
        'Let me check both.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "杭州"}}\n'
        '</tool_call>\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "北京", "unit": "°C"}}\n'
        "</tool_call>",
        "Let me check both.",
        [("get_weather", {"city": "杭州"}), ("get_weather", {"city": "北京", "unit": "°C"})],
    ),
    ("hermes", '<tool_call>{"name":"ping","arguments":{}}</tool_call>', None, [("ping", {})]),
    (
        "hermes",
        '<tool_call>\n{"name": "search", "arguments": {"search_request": {"q": "a \\"quoted\\" }{ thing", '
        '"filters": [{"k": "lang", "v": ["en", "中文"]}], "limit": 5, "exact": true, '
        '"score": -1.5e-3, "x": null}}}\n'
        "</tool_call>",
        None,
        [
            (
                "search",
                {
                    "search_request": {
                        "q": 'a "quoted" }{ thing',
                        "filters": [{"k": "lang", "v": ["en", "中文"]}],
                        "limit": 5,
                        "exact": True,
                        "score": -1.5e-3,
                        "x": None,
                    }
                },
            )
        ],
    ),
    (
        "hermes",
        "You call tools by writing <tool_call> followed by JSON; I will not call one now.",
        "You call tools by writing <tool_call> followed by JSON; I will not call one now.",
        [],
    ),
    (
        "hermes",
        'Tags like <tool_call> or </tool_call> are syntax.\n<tool_call>\n{"name": "ping", "arguments": {}}\n'
        "</tool_call>",
        "Tags like <tool_call> or </tool_call> are syntax.",
        [("ping", {})],
    ),
    (
        "hermes",
        '<tool_call>\n{"name": "x", "arguments": [1, 2]}\n</tool_call>',
        '<tool_call>\n{"name": "x", "arguments": [1, 2]}\n</tool_call>',
        [],
    ),
    (
        "hermes",
        '<tool_call>\n{"name": "ping", "arguments": {}}\n</tool_call>\nDone, the host is up.',
        "Done, the host is up.",
        [("ping", {})],
    ),
    ("hermes", "ends on a partial tag <tool_ca", "ends on a partial tag <tool_ca", []),
    (
        "llama3_json",
        '{"name": "get_weather", "parameters": {"city": "San Francisco", "unit": "celsius"}}',
        None,
        [("get_weather", {"city": "San Francisco", "unit": "celsius"})],
    ),
    (
        "llama3_json",
        '<|python_tag|>{"type": "function", "name": "search", "parameters": {"query": "天气"}}',
        None,
        [("search", {"query": "天气"})],
    ),
    (
        "llama3_json",
        '{"name": "a", "parameters": {"n": 1}}; {"name": "b", "arguments": {"s": "x;y"}}',
        None,
        [("a", {"n": 1}), ("b", {"s": "x;y"})],
    ),
    (
        "llama3_json",
        'I will look it up.\n{"name": "search", "parameters": {"query": "llama"}}',
        "I will look it up.",
        [("search", {"query": "llama"})],
    ),
    (
        "llama3_json",
        'The JSON {"name": "search", "parameters": {}} is how a call looks.',
        'The JSON {"name": "search", "parameters": {}} is how a call looks.',
        [],
    ),
    ("llama3_json", '{"name": 42}', '{"name": 42}', []),
    (
        "kagent",
        '{\n    "task_name": "Search the web",\n    "command":{\n        "name":"web_search",\n'
        '        "args":{\n'
        '            "query":"KwaiAgents"\n        }\n    }\n}',
        "Search the web",
        [("web_search", {"query": "KwaiAgents"})],
    ),
    ("kagent", '{"command": {"name": "calc", "args": {"expr": "1+1"}}}', None, [("calc", {"expr": "1+1"})]),
    (
        "kagent",
        '{"task_name": "只回答", "answer": "没有命令"}',
        '{"task_name": "只回答", "answer": "没有命令"}',
        [],
    ),
    ("kagent", "杭州明天小雨，不太适合划船。", "杭州明天小雨，不太适合划船。", []),
    (
        "kagent",
        '{"task_name": "带\\"引号\\"和\\n换行", "command": {"name": "note", "args": {"text": "{}"}}}',
        '带"引号"和\n换行',
        [("note", {"text": "{}"})],
    ),
]


def _kagent_samples() -> list[tuple[str, str, str | None, Calls]]:
    records = json.loads((REPO / "samples/datasets/kwaiagent_train_data.json").read_text(encoding="utf-8"))
    out = []
    for record in records:
        for step in record["llm_prompt_response"]:
            try:
                task = json.loads(step["output"])
            except ValueError:
                out.append(("kagent", step["output"], step["output"], []))
                continue
            calls = [(task["command"]["name"], task["command"]["args"])]
            out.append(("kagent", step["output"], task["task_name"], calls))
    return out


CASES = GOLDEN + _kagent_samples()


def _counter_ids() -> Any:
    counter = itertools.count()
    return lambda: f"call_{next(counter)}"


def _replay(name: str, pieces: list[str]) -> tuple[list[Delta], ParsedReply]:
    s = stream(name, make_id=_counter_ids())
    deltas = [d for piece in pieces for d in s.feed(piece)] + s.finish()
    return deltas, s.result()


def _assert_deltas_agree(deltas: list[Delta], reply: ParsedReply) -> None:
    content = "".join(d.text for d in deltas if isinstance(d, ContentDelta))
    assert (content or None) == reply.content
    starts = [d for d in deltas if isinstance(d, CallStart)]
    assert [(s.index, s.id, s.name) for s in starts] == [
        (i, c.id, c.name) for i, c in enumerate(reply.tool_calls)
    ]
    for i, call in enumerate(reply.tool_calls):
        first = next(k for k, d in enumerate(deltas) if isinstance(d, CallStart) and d.index == i)
        fragments = [
            (k, d.text) for k, d in enumerate(deltas) if isinstance(d, ArgumentsDelta) and d.index == i
        ]
        assert all(k > first for k, _ in fragments)  # the start comes first
        assert "".join(text for _, text in fragments) == call.arguments


def _byte_split(text: str, k: int) -> list[str]:
    data = text.encode("utf-8")
    decoder = codecs.getincrementaldecoder("utf-8")()
    return [decoder.decode(data[:k]), decoder.decode(data[k:], final=True)]


@pytest.mark.parametrize(
    ("name", "text", "content", "calls"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_golden_output_parses_and_streams_identically(
    name: str, text: str, content: str | None, calls: Calls
) -> None:
    reply = parse(name, text, make_id=_counter_ids())
    assert reply.content == content
    assert [(c.name, c.arguments_object()) for c in reply.tool_calls] == calls
    assert all(c.complete for c in reply.tool_calls)
    splits = [list(text)] + [_byte_split(text, k) for k in range(len(text.encode("utf-8")) + 1)]
    for pieces in splits:
        deltas, streamed = _replay(name, pieces)
        assert streamed == reply, pieces
        _assert_deltas_agree(deltas, streamed)


def test_a_call_cut_off_mid_arguments_is_kept_incomplete_in_both_modes() -> None:
    text = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par'
    reply = parse("hermes", text, make_id=_counter_ids())
    assert reply.content is None
    assert [(c.name, c.arguments, c.complete) for c in reply.tool_calls] == [
        ("get_weather", '{"city": "Par', False)
    ]
    assert reply.tool_calls[0].arguments_object() is None
    for k in range(len(text) + 1):
        assert _replay("hermes", [text[:k], text[k:]])[1] == reply


def test_the_call_is_announced_as_soon_as_it_is_certain_and_not_before() -> None:
    s = stream("hermes", make_id=_counter_ids())
    assert s.feed("Sure.\n<tool_call>\n") == [ContentDelta("Sure.")]  # the newline is held back
    assert s.feed('{"name": "get_weather", "argu') == []
    assert s.feed('ments": {"ci') == [CallStart(0, "call_0", "get_weather"), ArgumentsDelta(0, '{"ci')]
    assert s.feed('ty": "Paris"}}\n</tool_call>') == [ArgumentsDelta(0, 'ty": "Paris"}')]
    assert s.finish() == []


def test_tool_names_turn_a_call_to_an_undeclared_tool_into_text() -> None:
    text = '<tool_call>\n{"name": "rm_rf", "arguments": {}}\n</tool_call>'
    assert parse("hermes", text, tool_names={"get_weather"}) == ParsedReply(text, [])
    finish = '{"task_name": "done", "command": {"name": "task_complete", "args": {"answer": "ok"}}}'
    assert parse("kagent", finish, tool_names={"web_search"}).tool_calls == []
    assert len(parse("kagent", finish, tool_names={"task_complete"}).tool_calls) == 1


def test_ids_are_unique_and_stable_per_call() -> None:
    text = GOLDEN[1][1]
    reply = parse("hermes", text)
    ids = [c.id for c in reply.tool_calls]
    assert len(set(ids)) == 2 and all(i.startswith("call_") for i in ids)


def test_every_template_names_a_known_parser_and_unknown_names_are_clear() -> None:
    for name in list_templates():
        tools = get_template(name).tools
        if tools is not None:
            assert tools.parser in list_parsers()
    assert {"hermes", "llama3_json", "kagent"} <= set(list_parsers())
    with pytest.raises(CamelChatError, match=r"unknown tool-call parser 'mistral'.*hermes"):
        parse("mistral", "x")
