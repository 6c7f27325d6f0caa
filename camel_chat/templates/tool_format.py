"""How a template writes tools: the `[<template>.tools]` table of `templates.toml`.

A `ToolFormat` is data: the tools block that replaces the system text when a conversation
has tools, the text of one definition, of one assistant call and of one tool result, and
the name of the parser that reads the template's calls back (`camel_chat.tool_parsers`).
Placeholders are filled in one pass, so text a user wrote (a system prompt, a result)
is never scanned for placeholders. JSON is written as `json.dumps(..., ensure_ascii=False)`
writes it, which is what transformers' Jinja `tojson` filter writes too.

Fields (all strings unless said):
    parser          name of the tool-call parser for this template's output
    system          the system text when tools are given: {system} (the conversation's
                    system text) and {tools} (the definitions, concatenated)
    definition      one tool: {tool} (the OpenAI tool JSON) or {function} (its function
                    object), {index} (1-based position)
    indent          JSON indent of {tool}/{function} (integer, optional: one line)
    call            one call: {name} and {arguments} as JSON; {content} (the message's
                    text as a JSON string) puts the assistant's text inside the call
    call_separator  written before each call that follows the message's text or a call
    max_calls       most calls one assistant message may hold (integer, 0: no limit)
    result          one tool result: {content} is the result text, verbatim
    results_open    written before a run of consecutive tool results (optional)
    results_close   written after such a run (optional)
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from camel_chat.conversation import Tool, ToolCall
from camel_chat.errors import CamelChatError

_PLACEHOLDER = re.compile(r"\{(system|tools|tool|function|index|name|arguments|content)\}")
# The placeholders each field may use; anything else in braces is literal text.
_ALLOWED = {
    "system": {"system", "tools"},
    "definition": {"tool", "function", "index"},
    "call": {"name", "arguments", "content"},
    "result": {"content"},
}
_REQUIRED = {"system": {"tools"}, "definition": set(), "call": {"name", "arguments"}, "result": {"content"}}


def placeholders(fmt: str) -> list[str]:
    return [m.group(1) for m in _PLACEHOLDER.finditer(fmt)]


def fill(fmt: str, values: Mapping[str, str]) -> str:
    """Replace the placeholders of `fmt` in one pass (values are never re-scanned)."""
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)] if m.group(1) in values else m.group(0), fmt)


def split(fmt: str) -> list[tuple[str, bool]]:
    """`fmt` as (text, is_placeholder) parts, in order (the Jinja export builds on it)."""
    parts: list[tuple[str, bool]] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(fmt):
        if m.start() > pos:
            parts.append((fmt[pos : m.start()], False))
        parts.append((m.group(1), True))
        pos = m.end()
    if pos < len(fmt):
        parts.append((fmt[pos:], False))
    return parts


def to_json(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


@dataclass(frozen=True)
class ToolFormat:
    parser: str
    system: str
    definition: str
    indent: int | None
    call: str
    call_separator: str
    max_calls: int
    result: str
    results_open: str
    results_close: str

    @property
    def content_in_call(self) -> bool:
        """The assistant's text is written inside its (single) call, not before it."""
        return "content" in placeholders(self.call)

    def definitions(self, tools: tuple[Tool, ...]) -> str:
        return "".join(
            fill(
                self.definition,
                {
                    "tool": to_json(t.to_openai(), self.indent),
                    "function": to_json(t.function(), self.indent),
                    "index": str(k + 1),
                },
            )
            for k, t in enumerate(tools)
        )

    def system_text(self, system: str, tools: tuple[Tool, ...]) -> str:
        return fill(self.system, {"system": system, "tools": self.definitions(tools)})

    def call_text(self, call: ToolCall, content: str) -> str:
        values = {"name": to_json(call.name), "arguments": to_json(dict(call.arguments))}
        return fill(self.call, {**values, "content": to_json(content)})

    def calls_text(self, content: str, calls: tuple[ToolCall, ...]) -> str:
        """An assistant message's trained body before the end-of-turn text: its text (unless
        the call carries it) and its calls."""
        shown = "" if self.content_in_call and calls else content
        out = shown
        for call in calls:
            out += (self.call_separator if out else "") + self.call_text(call, content)
        return out

    def result_parts(self) -> tuple[str, str]:
        """The result format around its {content}."""
        before, after = self.result.split("{content}")
        return before, after


def parse_tool_format(template: str, raw: Any) -> ToolFormat | None:
    """Read a `[<template>.tools]` table; errors name the template and the field."""
    if raw is None:
        return None
    where = f"template {template!r}: tools"
    if not isinstance(raw, Mapping):
        raise CamelChatError(f"{where}: must be a table")
    for key in ("parser", "system", "definition", "call", "result"):
        if not isinstance(raw.get(key), str):
            raise CamelChatError(f"{where}.{key}: a string is required")
    for key, allowed in _ALLOWED.items():
        used = placeholders(raw[key])
        if not set(used) <= allowed or not _REQUIRED[key] <= set(used):
            raise CamelChatError(
                f"{where}.{key}: uses {sorted(set(used))}; allowed {sorted(allowed)}, "
                f"required {sorted(_REQUIRED[key])}"
            )
    if placeholders(raw["result"]).count("content") != 1:
        raise CamelChatError(f"{where}.result: must contain {{content}} exactly once")
    max_calls = raw.get("max_calls", 0)
    indent = raw.get("indent")
    bad_indent = indent is not None and (not isinstance(indent, int) or indent < 0)
    if not isinstance(max_calls, int) or max_calls < 0 or bad_indent:
        raise CamelChatError(f"{where}: max_calls and indent must be non-negative integers")
    if "content" in placeholders(raw["call"]) and max_calls != 1:
        raise CamelChatError(f"{where}: a call that carries {{content}} needs max_calls = 1")
    return ToolFormat(
        parser=raw["parser"],
        system=raw["system"],
        definition=raw["definition"],
        indent=indent,
        call=raw["call"],
        call_separator=str(raw.get("call_separator", "")),
        max_calls=max_calls,
        result=raw["result"],
        results_open=str(raw.get("results_open", "")),
        results_close=str(raw.get("results_close", "")),
    )
