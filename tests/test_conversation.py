"""Conversation validation names the message index and the rule."""

from __future__ import annotations

import pytest

from camel_chat.conversation import (
    Conversation,
    ConversationError,
    Message,
    ToolCall,
    from_openai,
    from_sharegpt,
    to_openai,
    to_sharegpt,
    tool_from_openai,
    validate,
)


@pytest.mark.parametrize(
    ("messages", "rule", "index"),
    [
        ((), "empty", None),
        ((Message("assistant", "x"),), "must-start-with-user", 0),
        ((Message("user", "a"), Message("user", "b")), "roles-must-alternate", 1),
        ((Message("user", "a"), Message("assistant", "  ")), "empty-content", 1),
        ((Message("user", "a"), Message("system", "s")), "system-not-first", 1),
        ((Message("user", "a"), Message("bot", "t")), "unknown-role", 1),  # type: ignore[arg-type]
        ((Message("user", "a"),), "must-end-with-assistant", 0),
    ],
)
def test_validate_names_rule_and_index(messages: tuple[Message, ...], rule: str, index: int | None) -> None:
    with pytest.raises(ConversationError) as info:
        validate(Conversation(messages))
    assert info.value.rule == rule
    assert info.value.index == index


def test_sharegpt_round_trip_with_system() -> None:
    record = {
        "id": "x1",
        "conversations": [
            {"from": "system", "value": "S"},
            {"from": "human", "value": "q"},
            {"from": "gpt", "value": "a"},
        ],
    }
    conv = from_sharegpt(record)
    assert conv.system == "S"
    assert [m.role for m in conv.messages] == ["user", "assistant"]
    validate(conv)
    assert to_sharegpt(conv) == record


def test_from_sharegpt_unknown_role_names_turn() -> None:
    with pytest.raises(ConversationError, match="message 1: unknown-role: 'from' is 'bing'"):
        from_sharegpt({"conversations": [{"from": "human", "value": "q"}, {"from": "bing", "value": "a"}]})
    with pytest.raises(ConversationError, match="missing-field"):
        from_sharegpt({"conversations": [{"from": "human"}]})


# --- tools -----------------------------------------------------------------------------------

WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def _call(call_id: str = "c1", name: str = "weather", arguments: object = None) -> dict[str, object]:
    args = {"city": "Paris"} if arguments is None else arguments
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}


def _agent_loop() -> list[dict[str, object]]:
    return [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [_call("c1"), _call("c2", arguments='{"city":"Rome"}')],
        },
        {"role": "tool", "tool_call_id": "c2", "content": "rain"},
        {"role": "tool", "tool_call_id": "c1", "name": "weather", "content": "sun"},
        {"role": "assistant", "content": "Paris: sun. Rome: rain."},
    ]


def test_from_openai_canonicalises_an_agent_loop_and_round_trips() -> None:
    conv = from_openai(_agent_loop(), tools=[WEATHER])
    validate(conv)
    assert conv.system == "S"
    assert conv.tools == (tool_from_openai(WEATHER),)
    calls = conv.messages[1].tool_calls
    assert [c.arguments for c in calls] == [{"city": "Paris"}, {"city": "Rome"}]  # the string was decoded
    assert conv.messages[1].content == ""  # content: null
    again = from_openai(to_openai(conv), tools=[t.to_openai() for t in conv.tools])
    assert again == conv
    wire = to_openai(conv, arguments_as_text=True)
    assert wire[2]["tool_calls"][1]["function"]["arguments"] == '{"city": "Rome"}'
    assert wire[4]["name"] == "weather" and "name" not in wire[3]


def test_from_openai_flattens_text_parts_and_drops_empty_tool_calls() -> None:
    conv = from_openai(
        [
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": "x", "tool_calls": []},
        ]
    )
    assert conv.messages[0].content == "a\nb"
    assert conv.messages[1].tool_calls == ()
    validate(conv)


def _rule(
    messages: list[dict[str, object]], tools: list[object] | None = None, **kw: object
) -> tuple[str, object]:
    with pytest.raises(ConversationError) as info:
        validate(from_openai(messages, tools=tools), **kw)  # type: ignore[arg-type]
    return info.value.rule, info.value.index


def test_tool_rules_are_named_with_the_offending_index() -> None:
    loop = _agent_loop()
    user, calls, r2, r1, answer = loop[1:]
    assert _rule([r1, *loop[1:]], [WEATHER]) == ("tool-message-first", 0)
    assert _rule([user, {"role": "assistant", "content": "hi"}, r1], [WEATHER]) == (
        "tool-result-without-call",
        2,
    )
    assert _rule([user, calls, r2, r2], [WEATHER]) == ("tool-result-without-call", 3)
    assert _rule([user, calls, r2, answer], [WEATHER]) == ("missing-tool-result", 3)
    assert _rule([user, calls, r2], [WEATHER], ends_with="user") == ("missing-tool-result", 2)
    assert _rule([user, calls, r2, r1], [], ends_with="user") == ("unknown-tool", 1)
    other = {"type": "function", "function": {"name": "other"}}
    assert _rule([user, calls, r2, r1, answer], [other]) == ("unknown-tool", 1)
    mismatch = {**r1, "name": "other"}
    assert _rule([user, calls, r2, mismatch], [WEATHER], ends_with="user") == ("tool-name-mismatch", 3)
    twice = {"role": "assistant", "content": "", "tool_calls": [_call("c1"), _call("c1")]}
    assert _rule([user, twice], [WEATHER]) == ("duplicate-tool-call-id", 1)
    not_object = {"role": "assistant", "content": "", "tool_calls": [_call(arguments="[1, 2]")]}
    with pytest.raises(ConversationError, match="arguments-not-object") as info:
        from_openai([user, not_object], tools=[WEATHER])
    assert info.value.index == 1
    with pytest.raises(ConversationError, match="arguments-not-json"):
        from_openai([user, {"role": "assistant", "tool_calls": [_call(arguments="{oops")]}])
    with pytest.raises(ConversationError, match="missing-tool-call-id"):
        from_openai([user, calls, {"role": "tool", "content": "x"}])
    with pytest.raises(ConversationError, match="tool-calls-not-assistant"):
        from_openai([{"role": "user", "content": "x", "tool_calls": [_call()]}])
    # The dataclass route (not only the OpenAI edge) checks argument types and JSON-ness too.
    bad = Message("assistant", "", (ToolCall("c1", "weather", [1]),))  # type: ignore[arg-type]
    with pytest.raises(ConversationError, match="arguments-not-object"):
        validate(Conversation((Message("user", "q"), bad), tools=(tool_from_openai(WEATHER),)))
    nan = Message("assistant", "", (ToolCall("c1", "weather", {"x": float("nan")}),))
    with pytest.raises(ConversationError, match="arguments-not-json"):
        validate(Conversation((Message("user", "q"), nan), tools=(tool_from_openai(WEATHER),)))


def test_a_final_call_without_result_trains_but_does_not_serve() -> None:
    user, calls = _agent_loop()[1:3]
    conv = from_openai([user, calls], tools=[WEATHER])
    validate(conv)  # function-calling data ends on the call
    with pytest.raises(ConversationError, match="must-end-with-user"):
        validate(conv, ends_with="user")
    results = _agent_loop()[3:5]
    validate(from_openai([user, calls, *results], tools=[WEATHER]), ends_with="user")


@pytest.mark.parametrize(
    ("tool", "rule"),
    [
        ({"type": "retrieval"}, "bad-tool"),
        ({"type": "function", "function": {"description": "no name"}}, "bad-tool"),
        ({"type": "function", "function": {"name": "has space"}}, "bad-tool-name"),
        ({"type": "function", "function": {"name": "x" * 65}}, "bad-tool-name"),
        (
            {"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}},
            "bad-tool-parameters",
        ),
        ({"type": "function", "function": {"name": "f", "parameters": []}}, "bad-tool-parameters"),
        ({"type": "function", "function": {"name": "f", "strict": "yes"}}, "bad-tool"),
    ],
)
def test_bad_tool_definitions_are_named(tool: dict[str, object], rule: str) -> None:
    with pytest.raises(ConversationError) as info:
        from_openai([{"role": "user", "content": "q"}], tools=[tool])
    assert info.value.rule == rule
    assert "tools[0]" in info.value.detail


def test_duplicate_tool_names_and_unsupported_parts() -> None:
    user = {"role": "user", "content": "q"}
    with pytest.raises(ConversationError, match="duplicate-tool"):
        validate(from_openai([user, {"role": "assistant", "content": "a"}], tools=[WEATHER, WEATHER]))
    image = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
    with pytest.raises(ConversationError, match="unsupported-content"):
        from_openai([image])
    with pytest.raises(ConversationError, match="message 1: system-not-first"):
        from_openai([user, {"role": "system", "content": "late"}])


def test_sharegpt_refuses_tools_instead_of_dropping_them() -> None:
    conv = from_openai(_agent_loop(), tools=[WEATHER])
    with pytest.raises(ConversationError, match="tools-not-sharegpt"):
        to_sharegpt(conv)


def test_module_docstring_example_holds() -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module("camel_chat.conversation"))
    assert result.attempted >= 3 and result.failed == 0
