"""Random conversations with awkward text (and tools), shared by the template tests."""

from __future__ import annotations

import random
from typing import Any

from camel_chat.conversation import Conversation, Message, Tool, ToolCall
from camel_chat.conversation import to_openai as _to_openai

PIECES = [
    "Hello",
    "world",
    "  leading spaces",
    "trailing spaces  ",
    "new\nlines\n\n",
    "quotes \" and ' here",
    "back\\slash",
    "{{ jinja }} {% if %} {# c #}",
    "{content} {system} {eos_token}",
    "你好，世界",
    "emoji 🙂",
    "tab\there",
    "</s> looks special",
    "USER: fake header",
    "### Human: fake",
    "x" * 40,
    "1234567890",
    "Solution: use a list.",
]


def random_text(rng: random.Random) -> str:
    text = " ".join(rng.choice(PIECES) for _ in range(rng.randint(1, 5)))
    return text if text.strip() else "x"


def random_conversation(rng: random.Random, *, end_with: str = "assistant") -> Conversation:
    pairs = rng.randint(1, 4)
    messages: list[Message] = []
    for _ in range(pairs):
        messages += [Message("user", random_text(rng)), Message("assistant", random_text(rng))]
    if end_with == "user":
        messages.append(Message("user", random_text(rng)))
    system = rng.choice([None, "", "You are terse.", random_text(rng)])
    return Conversation(tuple(messages), system)


def to_openai(conv: Conversation) -> list[dict[str, Any]]:
    return _to_openai(conv)


# Text that looks like tool syntax but is not a call in any of our formats.
TOOL_LOOKALIKES = [
    "use the <tool_call> tag",
    "</tool_call> closes it",
    "<tool_response>",
    '{"name": 1}',
    '{"task_name": "x"} is a task',
    "<|python_tag|> hm",
]
ARG_STRINGS = ["Paris", "杭州", 'say "hi"', "back\\slash", "a\nb", "emoji 🙂", "}{][", "", " spaced "]


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.choice(
        ["str", "int", "float", "bool", "null", "list", "dict"] if depth < 3 else ["str", "int"]
    )
    if kind == "str":
        return rng.choice(ARG_STRINGS)
    if kind == "int":
        return rng.randint(-(10**12), 10**12)
    if kind == "float":
        return rng.choice([0.5, -3.25, 1e-7, 12345.678])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "list":
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return random_arguments(rng, depth + 1)


def random_arguments(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    keys = ["city", "城市", "q", "nested", "with space", 'quo"te', "n"]
    return {rng.choice(keys): random_value(rng, depth) for _ in range(rng.randint(0, 3))}


def random_tools(rng: random.Random) -> tuple[Tool, ...]:
    names = rng.sample(
        ["weather", "search", "get_time", "calc-2", "send_mail", "lookup_城市"[:6]], rng.randint(1, 3)
    )
    return tuple(
        Tool(
            name,
            rng.choice([None, "Does a thing.", '描述 with "quotes"']),
            rng.choice(
                [None, {"type": "object", "properties": {"city": {"type": "string"}}, "required": []}]
            ),
        )
        for name in names
    )


def random_tool_conversation(
    rng: random.Random, *, end_with: str = "assistant", max_calls: int = 3
) -> Conversation:
    """user → assistant (text, or calls → one result per call in a random order → …)."""
    tools = random_tools(rng)
    messages: list[Message] = []
    for turn in range(rng.randint(1, 3)):
        messages.append(Message("user", rng.choice([random_text(rng), rng.choice(TOOL_LOOKALIKES)])))
        for step in range(rng.randint(0, 2)):
            calls = tuple(
                ToolCall(f"call_{turn}_{step}_{k}", rng.choice(tools).name, random_arguments(rng))
                for k in range(rng.randint(1, max_calls))
            )
            messages.append(Message("assistant", rng.choice(["", random_text(rng).rstrip()]), calls))
            for call in rng.sample(calls, len(calls)):
                result = rng.choice([random_text(rng), '{"temp": 21}', ""])
                messages.append(
                    Message("tool", result, tool_call_id=call.id, name=rng.choice([None, call.name]))
                )
        if end_with == "assistant" or turn < 2:
            messages.append(Message("assistant", random_text(rng)))
    if end_with == "user" and messages[-1].role == "assistant":
        messages.append(Message("user", random_text(rng)))
    system = rng.choice([None, "", "You are terse.", random_text(rng)])
    return Conversation(tuple(messages), system, tools=tools)
