"""Conversations as plain data, and the rules a conversation must follow.

A `Conversation` is an optional system message, the tools it may call (OpenAI function
tools) and its messages: user, assistant (text and/or `tool_calls`) and `tool` (a result,
answering one call by `tool_call_id`). Roles use the OpenAI names; ShareGPT's
`human`/`gpt` (`from_sharegpt`, `to_sharegpt`) and OpenAI `messages` + `tools`
(`from_openai`, `to_openai`) are converted at the edge. `validate` raises
`ConversationError` naming the message index and the rule that failed. No I/O here.

    >>> conv = from_openai(
    ...     [{"role": "user", "content": "Weather in Paris?"},
    ...      {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
    ...       "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}]},
    ...      {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ...      {"role": "assistant", "content": "It is sunny."}],
    ...     tools=[{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
    ... )
    >>> validate(conv)
    >>> conv.messages[1].tool_calls[0].arguments
    {'city': 'Paris'}
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[Role, ...] = ("system", "user", "assistant", "tool")
SHAREGPT_TO_ROLE: dict[str, Role] = {"human": "user", "gpt": "assistant", "system": "system"}
ROLE_TO_SHAREGPT: dict[Role, str] = {"user": "human", "assistant": "gpt", "system": "system"}
# OpenAI's rule for function names; templates write names unquoted, so nothing else may pass.
TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class ConversationError(ValueError):
    """A conversation breaks a rule; `index` is the offending message (None: the whole)."""

    def __init__(self, rule: str, detail: str, index: int | None = None) -> None:
        self.rule = rule
        self.index = index
        self.detail = detail
        where = "conversation" if index is None else f"message {index}"
        super().__init__(f"{where}: {rule}: {detail}")


@dataclass(frozen=True)
class Tool:
    """An OpenAI function tool: a name, an optional description and JSON-Schema parameters."""

    name: str
    description: str | None = None
    parameters: Mapping[str, Any] | None = None
    strict: bool | None = None

    def function(self) -> dict[str, Any]:
        """The OpenAI `function` object, keys in a fixed order (templates render it as JSON)."""
        out: dict[str, Any] = {"name": self.name}
        if self.description is not None:
            out["description"] = self.description
        if self.parameters is not None:
            out["parameters"] = self.parameters
        if self.strict is not None:
            out["strict"] = self.strict
        return out

    def to_openai(self) -> dict[str, Any]:
        return {"type": "function", "function": self.function()}


@dataclass(frozen=True)
class ToolCall:
    """One call an assistant makes: `arguments` is the decoded JSON object, never a string."""

    id: str
    name: str
    arguments: Mapping[str, Any]


@dataclass(frozen=True)
class Message:
    """`content` is "" for an assistant message that only calls tools. `tool_call_id` (and
    optionally `name`) belong to `tool` messages, `tool_calls` to assistant messages."""

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class Conversation:
    """A system prompt (None: the template's default), the tools, and the messages after it."""

    messages: tuple[Message, ...]
    system: str | None = None
    id: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)
    tools: tuple[Tool, ...] = ()

    @classmethod
    def of(cls, *pairs: tuple[str, str], system: str | None = None, id: str = "") -> Conversation:
        """Build from (role, content) pairs: `Conversation.of(("user", "hi"), ("assistant", "yo"))`."""
        return cls(tuple(Message(_role(r, i), c) for i, (r, c) in enumerate(pairs)), system, id)

    @property
    def uses_tools(self) -> bool:
        """True when a template must render tools: definitions, calls or results."""
        return bool(self.tools) or any(m.role == "tool" or m.tool_calls for m in self.messages)


def _role(role: object, index: int) -> Role:
    if role not in ROLES:
        raise ConversationError("unknown-role", f"role {role!r} is not one of {ROLES}", index)
    return role  # type: ignore[return-value]


def validate(conversation: Conversation, *, ends_with: Role | None = "assistant") -> None:
    """Check the shape our templates render: user, assistant, user, ... where an assistant
    message with `tool_calls` is followed by one `tool` message per call (any order)
    before the conversation goes on.

    `ends_with="assistant"` is the training rule (every user turn is answered; a final
    assistant message may end on calls without results, as function-calling data does);
    `ends_with="user"` is the serving rule (the model answers the last user message, or
    the results of the last calls, all of them present); `None` accepts either.
    """
    messages = conversation.messages
    if not messages:
        raise ConversationError("empty", "no messages")
    tools = _tool_names(conversation.tools)
    pending: dict[str, str] = {}  # call id -> tool name, for calls still waiting for a result
    seen_ids: set[str] = set()
    for i, message in enumerate(messages):
        _check_message(message, i)
        prev = messages[i - 1] if i else None
        if message.role == "tool":
            _check_result(message, i, prev, pending)
            continue
        if pending:
            missing = ", ".join(sorted(pending))
            raise ConversationError("missing-tool-result", f"no result for call(s) {missing} before this", i)
        # After tool results the model answers them, or the user speaks again.
        expected = {None: ("user",), "user": ("assistant",), "assistant": ("user",)}.get(
            prev.role if prev else None, ("assistant", "user")
        )
        if message.role not in expected:
            rule = "must-start-with-user" if i == 0 else "roles-must-alternate"
            raise ConversationError(rule, f"expected {' or '.join(expected)}, got {message.role}", i)
        for call in message.tool_calls:
            _check_call(call, i, tools, seen_ids)
            pending[call.id] = call.name
    _check_end(messages, pending, ends_with)


def _check_message(message: Message, i: int) -> None:
    if message.role == "system":
        raise ConversationError("system-not-first", "a system message may only come first", i)
    _role(message.role, i)
    if not isinstance(message.content, str):
        raise ConversationError("content-not-text", f"content is {type(message.content).__name__}", i)
    if message.tool_calls and message.role != "assistant":
        raise ConversationError("tool-calls-not-assistant", f"a {message.role} message has tool_calls", i)
    # A tool may legitimately return nothing; a user or assistant message may not say nothing.
    if message.role != "tool" and not message.tool_calls and not message.content.strip():
        raise ConversationError("empty-content", "content is empty", i)


def _check_result(message: Message, i: int, prev: Message | None, pending: dict[str, str]) -> None:
    if prev is None:
        raise ConversationError("tool-message-first", "a conversation cannot start with a tool result", i)
    call_id = message.tool_call_id
    if call_id not in pending:
        why = f"waiting for {', '.join(sorted(pending))}" if pending else "no call is waiting for a result"
        raise ConversationError("tool-result-without-call", f"tool_call_id {call_id!r}: {why}", i)
    name = pending.pop(call_id)
    if message.name is not None and message.name != name:
        raise ConversationError(
            "tool-name-mismatch", f"result names {message.name!r}, call {call_id!r} called {name!r}", i
        )


def _check_call(call: ToolCall, i: int, tools: set[str], seen_ids: set[str]) -> None:
    if not isinstance(call.id, str) or not call.id:
        raise ConversationError("bad-tool-call", "a tool call needs a non-empty id", i)
    if call.id in seen_ids:
        raise ConversationError("duplicate-tool-call-id", f"call id {call.id!r} is used twice", i)
    seen_ids.add(call.id)
    if call.name not in tools:
        known = ", ".join(sorted(tools)) or "no tools are defined"
        raise ConversationError("unknown-tool", f"call {call.id!r} names {call.name!r}; tools: {known}", i)
    if not isinstance(call.arguments, Mapping):
        got = type(call.arguments).__name__
        raise ConversationError("arguments-not-object", f"call {call.id!r}: arguments are a {got}", i)
    try:
        json.dumps(call.arguments, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConversationError("arguments-not-json", f"call {call.id!r}: {exc}", i) from None


def _check_end(messages: tuple[Message, ...], pending: dict[str, str], ends_with: Role | None) -> None:
    last = len(messages) - 1
    role = messages[-1].role
    if ends_with == "assistant" and role != "assistant":
        raise ConversationError("must-end-with-assistant", f"last message is {role}", last)
    if ends_with == "user":
        if role == "assistant":
            raise ConversationError("must-end-with-user", f"last message is {role}", last)
        if pending:
            missing = ", ".join(sorted(pending))
            raise ConversationError("missing-tool-result", f"no result for call(s) {missing}", last)


def _tool_names(tools: tuple[Tool, ...]) -> set[str]:
    names: set[str] = set()
    for k, tool in enumerate(tools):
        check_tool(tool, k)
        if tool.name in names:
            raise ConversationError("duplicate-tool", f"tools[{k}]: {tool.name!r} is defined twice")
        names.add(tool.name)
    return names


def check_tool(tool: Tool, k: int = 0) -> None:
    """A tool definition's own rules (name pattern, parameters an object schema)."""
    if not isinstance(tool.name, str) or not TOOL_NAME.fullmatch(tool.name):
        raise ConversationError(
            "bad-tool-name", f"tools[{k}]: name {tool.name!r} must match {TOOL_NAME.pattern}"
        )
    if tool.description is not None and not isinstance(tool.description, str):
        raise ConversationError("bad-tool", f"tools[{k}]: description must be a string")
    params = tool.parameters
    if params is not None and (not isinstance(params, Mapping) or params.get("type", "object") != "object"):
        raise ConversationError("bad-tool-parameters", f"tools[{k}]: parameters must be an object schema")


# --- ShareGPT edge --------------------------------------------------------------------------


def from_sharegpt(record: Mapping[str, Any]) -> Conversation:
    """Turn `{"id", "conversations": [{"from", "value"}, ...]}` into a `Conversation`.

    A leading `system` turn becomes the system prompt. Raises `ConversationError` for a
    missing field or an unknown `from`; call `validate` for the ordering rules.
    """
    turns = record.get("conversations")
    if not isinstance(turns, Sequence) or isinstance(turns, str):
        raise ConversationError("missing-field", "'conversations' must be a list")
    system: str | None = None
    messages: list[Message] = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, Mapping) or "from" not in turn or "value" not in turn:
            raise ConversationError("missing-field", "a turn needs 'from' and 'value'", i)
        role = SHAREGPT_TO_ROLE.get(turn["from"]) if isinstance(turn["from"], str) else None
        if role is None:
            raise ConversationError(
                "unknown-role",
                f"'from' is {turn['from']!r}, expected one of {sorted(SHAREGPT_TO_ROLE)}",
                i,
            )
        if role == "system" and i == 0:
            system = turn["value"]
            continue
        messages.append(Message(role, turn["value"]))
    return Conversation(tuple(messages), system, str(record.get("id", "")))


def to_sharegpt(conversation: Conversation) -> dict[str, Any]:
    """The inverse of `from_sharegpt` (the system prompt, if set, becomes a leading turn).
    Plain ShareGPT has no tools: a conversation that uses them raises `ConversationError`."""
    if conversation.uses_tools:
        raise ConversationError("tools-not-sharegpt", "plain ShareGPT cannot hold tools; use to_openai")
    turns = [{"from": "system", "value": conversation.system}] if conversation.system is not None else []
    turns += [{"from": ROLE_TO_SHAREGPT[m.role], "value": m.content} for m in conversation.messages]
    return {"id": conversation.id, "conversations": turns}


# --- OpenAI edge ---------------------------------------------------------------------------
# The de-facto standard for tool data and what the API receives. Messages are canonicalised
# before any template sees them (the failures peers' users hit, anchors/serving-2026.md §2):
# `arguments` strings are decoded into objects, `content: null` becomes "", text parts are
# joined, an empty `tool_calls` list is dropped.


def tool_from_openai(obj: Any, k: int = 0) -> Tool:
    """`{"type": "function", "function": {name, description?, parameters?, strict?}}` → `Tool`."""
    if not isinstance(obj, Mapping) or obj.get("type", "function") != "function":
        raise ConversationError("bad-tool", f"tools[{k}] must be an object with type 'function'")
    fn = obj.get("function")
    if not isinstance(fn, Mapping) or "name" not in fn:
        raise ConversationError("bad-tool", f"tools[{k}].function must be an object with a name")
    strict = fn.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise ConversationError("bad-tool", f"tools[{k}].function.strict must be a boolean")
    tool = Tool(fn["name"], fn.get("description"), fn.get("parameters"), strict)
    check_tool(tool, k)
    return tool


def _text(content: Any, i: int) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = []
        for part in content:
            if (
                not isinstance(part, Mapping)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise ConversationError("unsupported-content", "only text content parts are supported", i)
            parts.append(part["text"])
        return "\n".join(parts)
    raise ConversationError("content-not-text", f"content is {type(content).__name__}", i)


def _call_from_openai(obj: Any, i: int, k: int) -> ToolCall:
    fn = obj.get("function") if isinstance(obj, Mapping) else None
    if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
        raise ConversationError("bad-tool-call", f"tool_calls[{k}] needs function.name", i)
    arguments = fn.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError as exc:
            raise ConversationError("arguments-not-json", f"tool_calls[{k}].arguments: {exc}", i) from None
    if not isinstance(arguments, Mapping):
        got = type(arguments).__name__
        raise ConversationError("arguments-not-object", f"tool_calls[{k}].arguments is a {got}", i)
    # Data sets often carry no ids; a deterministic one keeps results attachable and ids stable.
    call_id = obj.get("id") or f"call_{i}_{k}"
    return ToolCall(str(call_id), fn["name"], dict(arguments))


def _message_from_openai(obj: Any, i: int) -> Message:
    if not isinstance(obj, Mapping) or "role" not in obj:
        raise ConversationError("missing-field", "a message needs a 'role'", i)
    role = "system" if obj["role"] == "developer" else obj["role"]
    content = _text(obj.get("content"), i)
    if role == "tool":
        call_id = obj.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            raise ConversationError("missing-tool-call-id", "a tool message needs 'tool_call_id'", i)
        name = obj.get("name")
        return Message("tool", content, tool_call_id=call_id, name=name if isinstance(name, str) else None)
    calls = obj.get("tool_calls") or []
    if role != "assistant" and calls:
        raise ConversationError("tool-calls-not-assistant", f"a {role} message has tool_calls", i)
    if not isinstance(calls, Sequence):
        raise ConversationError("bad-tool-call", "tool_calls must be a list", i)
    return Message(_role(role, i), content, tuple(_call_from_openai(c, i, k) for k, c in enumerate(calls)))


def from_openai(messages: Any, tools: Any = None, *, id: str = "") -> Conversation:
    """OpenAI Chat Completions `messages` (+ `tools`) → `Conversation`.

    A leading system (or developer) message becomes the system prompt; message indices in
    errors count from the first message of `messages`. Call `validate` for the ordering
    rules (this only checks each item's own shape)."""
    if not isinstance(messages, Sequence) or isinstance(messages, str):
        raise ConversationError("missing-field", "'messages' must be a list")
    if tools is not None and (not isinstance(tools, Sequence) or isinstance(tools, str)):
        raise ConversationError("bad-tool", "'tools' must be a list")
    parsed = [_message_from_openai(m, i) for i, m in enumerate(messages)]
    for i, message in enumerate(parsed[1:], start=1):
        if message.role == "system":
            raise ConversationError("system-not-first", "a system message may only come first", i)
    system = parsed.pop(0).content if parsed and parsed[0].role == "system" else None
    defined = tuple(tool_from_openai(t, k) for k, t in enumerate(tools or ()))
    return Conversation(tuple(parsed), system, id, tools=defined)


def to_openai(conversation: Conversation, *, arguments_as_text: bool = False) -> list[dict[str, Any]]:
    """The messages as OpenAI dicts (the tools are `[t.to_openai() for t in conversation.tools]`).

    Arguments stay objects, which is what chat templates need; `arguments_as_text=True`
    gives the JSON strings of the wire format."""
    out: list[dict[str, Any]] = []
    if conversation.system is not None:
        out.append({"role": "system", "content": conversation.system})
    for m in conversation.messages:
        item: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.tool_calls:
            item["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {
                        "name": c.name,
                        "arguments": json.dumps(c.arguments, ensure_ascii=False)
                        if arguments_as_text
                        else dict(c.arguments),
                    },
                }
                for c in m.tool_calls
            ]
        if m.role == "tool":
            item["tool_call_id"] = m.tool_call_id
            if m.name is not None:
                item["name"] = m.name
        out.append(item)
    return out
