"""Grammars (llguidance Lark) for what a request demands, built from the template's data.

A tool call grammar is derived from the same `ToolFormat.call` string the renderer fills,
literal by literal: `<tool_call>\\n{"name": ` + the tool's name + `, "arguments": ` +
a JSON value valid for that tool's parameters + `}\\n</tool_call>`. JSON is constrained
to `json.dumps`' layout (", " and ": ", no free whitespace), so what a constrained model
writes is byte for byte what the renderer writes for the same call: the model is held to
the format it is trained on, and the parser reads it back (the round trip tests prove
the parser half).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from camel_chat.conversation import Tool
from camel_chat.templates.tool_format import ToolFormat, split

# json.dumps' separators, no free whitespace (a random or weak model cannot stall in spaces).
JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
ANY_OBJECT: dict[str, Any] = {"type": "object"}
# A call that carries the reply's text (KAgent's task_name, a one-line sub-task) gets a
# bound, so a weak model cannot stall inside that string and never make the call.
CALL_TEXT_MAX = 200


def with_options(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The schema with llguidance's JSON layout options (an `x-guidance` key of its own wins)."""
    return {**schema, "x-guidance": {**JSON_OPTIONS, **dict(schema.get("x-guidance", {}))}}


def json_lark(schema: Mapping[str, Any]) -> str:
    return "start: " + _json(schema)


def _json(schema: Mapping[str, Any]) -> str:
    return "%json " + json.dumps(with_options(schema), ensure_ascii=False)


def _literal(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _call_rule(fmt: ToolFormat, tool: Tool, schema: Mapping[str, Any], *, drop: str = "") -> str:
    """One call to `tool` as the template writes it; `drop` is a prefix already consumed."""
    parts: list[str] = []
    for text, is_placeholder in split(fmt.call):
        if not is_placeholder:
            if drop:
                cut = min(len(drop), len(text))
                text, drop = text[cut:], drop[cut:]
            if text:
                parts.append(_literal(text))
        elif text == "name":
            parts.append(_literal(json.dumps(tool.name)))
        elif text == "arguments":
            parts.append(_json(schema))
        else:  # content: the reply's text is a JSON string inside the call (KAgent's task_name)
            parts.append(_json({"type": "string", "maxLength": CALL_TEXT_MAX}))
    return " ".join(parts)


def call_schema(tool: Tool, strict: bool) -> Mapping[str, Any]:
    """A call's arguments: the tool's schema when strict, else any JSON object."""
    return tool.parameters if strict and tool.parameters is not None else ANY_OBJECT


def calls_lark(
    fmt: ToolFormat,
    tools: Sequence[Tool],
    *,
    strict_names: frozenset[str],
    parallel: bool,
    optional_text: str | None = None,
) -> str:
    """One or more calls to `tools` (alternatives); `optional_text` allows free text instead,
    or before the calls when the format opens calls with that marker (e.g. `<tool_call>`)."""
    rules = [
        f"call_{k}: " + _call_rule(fmt, t, call_schema(t, t.name in strict_names))
        for k, t in enumerate(tools)
    ]
    alternatives = " | ".join(f"call_{k}" for k in range(len(tools)))
    many = parallel and fmt.max_calls != 1
    repeat = (
        f" ({_literal(fmt.call_separator)} call)*"
        if many and fmt.call_separator
        else (" call*" if many else "")
    )
    lines = [f"call: {alternatives}", f"calls: call{repeat}", *rules]
    if optional_text is None:
        return "\n".join(["start: calls", *lines])
    if fmt.call.startswith(optional_text) and not optional_text.startswith("{"):
        # Text up to the marker, then the calls; the marker itself is eaten by the text rule.
        rests = [
            f"rest_{k}: " + _call_rule(fmt, t, call_schema(t, t.name in strict_names), drop=optional_text)
            for k, t in enumerate(tools)
        ]
        head = " | ".join(f"rest_{k}" for k in range(len(tools)))
        lines += [f"first: {head}", *rests, f"text[stop={_literal(optional_text)}]: /(.|\\n)*/"]
        lines.append('plain[stop=""]: /(.|\\n)*/')  # text that ends the reply (at a stop token)
        following = f" ({_literal(fmt.call_separator)} call)*" if many else ""
        return "\n".join(["start: plain | text tail", f"tail: first{following}", *lines])
    # Bare-JSON formats: the reply is calls (it opens with "{") or text that does not.
    return "\n".join(["start: calls | TEXT", *lines, "TEXT: /[^{](.|\\n)*/"])
