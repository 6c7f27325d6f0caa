"""A request's constraint: OpenAI `response_format` / `tools` / `tool_choice` → a grammar, or none.

    constraint = constraint_for_request(
        response_format=body.get("response_format"), tools=body.get("tools"),
        tool_choice=body.get("tool_choice"), parallel_tool_calls=True, tool_format=template.tools,
    )   # None: decode freely; raises ConstraintError(param=...) for a 400

The mapping (OpenAI's contract, as vLLM applies it):
    response_format text / absent          nothing
    response_format json_object             any JSON object
    response_format json_schema             that schema
    tool_choice "none", or "auto" without strict tools    nothing (the parser reads calls)
    tool_choice "auto" with a strict tool   text, or calls (strict tools' arguments valid)
    tool_choice "required"                  one or more calls (one if not parallel)
    tool_choice {"type": "function", ...}   exactly one call to that tool
Demanded calls (required, named) follow each tool's schema; under "auto", strict tools
(`"strict": true`) do and the others get any JSON object. Every grammar is validated
here, without a tokenizer, so the API server (light: llguidance has no torch) answers a
malformed or unsupported schema with a 400 naming the field, never a 500 and never by
ignoring it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import llguidance

from camel_chat.constraints.grammar import ANY_OBJECT, calls_lark, json_lark
from camel_chat.conversation import ConversationError, Tool, tool_from_openai
from camel_chat.errors import CamelChatError
from camel_chat.templates.tool_format import ToolFormat
from camel_chat.tool_parsers import get_format

Kind = Literal["json_object", "json_schema", "tool_calls", "text_or_tool_calls"]


class ConstraintError(CamelChatError):
    """A request's constraint is malformed or unsupported; `param` is the request field."""

    def __init__(self, param: str, message: str) -> None:
        self.param = param
        self.message = message
        super().__init__(f"{param}: {message}")


@dataclass(frozen=True)
class Constraint:
    """A validated llguidance grammar (serialized) and what it stands for."""

    kind: Kind
    grammar: str
    lark: str


def _validated(kind: Kind, lark: str, param: str) -> Constraint:
    grammar = llguidance.LLMatcher.grammar_from_lark(lark)
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar)
    if is_error:
        raise ConstraintError(param, f"unsupported or malformed schema: {messages[0]}")
    return Constraint(kind, grammar, lark)


def _schema_param(schema: Any, param: str) -> Mapping[str, Any]:
    if not isinstance(schema, Mapping):
        raise ConstraintError(param, "must be a JSON Schema object")
    # Validate each schema on its own first, so the error names the field that is wrong.
    _validated("json_schema", json_lark(schema), param)
    return schema


def response_format_constraint(response_format: Any) -> Constraint | None:
    if response_format is None:
        return None
    if not isinstance(response_format, Mapping) or "type" not in response_format:
        raise ConstraintError("response_format", "must be an object with a 'type'")
    kind = response_format["type"]
    if kind == "text":
        return None
    if kind == "json_object":
        return _validated("json_object", json_lark(ANY_OBJECT), "response_format")
    if kind != "json_schema":
        raise ConstraintError(
            "response_format.type", f"{kind!r} is not one of text, json_object, json_schema"
        )
    spec = response_format.get("json_schema")
    if not isinstance(spec, Mapping):
        hint = (
            " (the schema goes inside 'json_schema', not next to 'type')"
            if "schema" in response_format
            else ""
        )
        raise ConstraintError(
            "response_format.json_schema", "must be an object with 'name' and 'schema'" + hint
        )
    if not isinstance(spec.get("name"), str) or not spec["name"]:
        raise ConstraintError("response_format.json_schema.name", "a name is required")
    schema = spec.get("schema", ANY_OBJECT)
    _schema_param(schema, "response_format.json_schema.schema")
    return _validated("json_schema", json_lark(schema), "response_format.json_schema.schema")


def _tools(tools: Any) -> tuple[Tool, ...]:
    if not isinstance(tools, Sequence) or isinstance(tools, str):
        raise ConstraintError("tools", "must be a list of function tools")
    parsed = []
    for k, raw in enumerate(tools):
        try:
            tool = tool_from_openai(raw, k)
        except ConversationError as exc:
            raise ConstraintError(f"tools[{k}]", exc.detail) from None
        if tool.parameters is not None:
            _schema_param(tool.parameters, f"tools[{k}].function.parameters")
        parsed.append(tool)
    return tuple(parsed)


def _chosen(tool_choice: Any, tools: tuple[Tool, ...]) -> tuple[str, tuple[Tool, ...]]:
    """('none'|'auto'|'required'|'named', the tools calls may use)."""
    if tool_choice is None:
        return ("auto" if tools else "none"), tools
    if tool_choice in ("none", "auto", "required"):
        if tool_choice != "none" and not tools:
            raise ConstraintError("tool_choice", f"{tool_choice!r} needs 'tools'")
        return tool_choice, tools
    fn = tool_choice.get("function") if isinstance(tool_choice, Mapping) else None
    if (
        not isinstance(fn, Mapping)
        or tool_choice.get("type") != "function"
        or not isinstance(fn.get("name"), str)
    ):
        raise ConstraintError(
            "tool_choice",
            'must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}',
        )
    named = tuple(t for t in tools if t.name == fn["name"])
    if not named:
        raise ConstraintError("tool_choice", f"names {fn['name']!r}, which is not in 'tools'")
    return "named", named


def constraint_for_request(
    *,
    response_format: Any = None,
    tools: Any = None,
    tool_choice: Any = None,
    parallel_tool_calls: bool = True,
    tool_format: ToolFormat | None = None,
) -> Constraint | None:
    """The one constraint a request demands (None: none), validated; see the module docstring.
    `tool_format` is how the served template writes calls (needed when calls are constrained)."""
    if tool_choice is not None and tools is None:
        raise ConstraintError("tool_choice", "is only allowed together with 'tools'")
    defined = _tools(tools) if tools is not None else ()
    mode, callable_tools = _chosen(tool_choice, defined)
    fmt_constraint = response_format_constraint(response_format)
    strict = frozenset(t.name for t in defined if t.strict)
    if mode in ("none", "auto") and not (mode == "auto" and strict):
        return fmt_constraint
    if fmt_constraint is not None:
        raise ConstraintError(
            "response_format", f"cannot be combined with tool_choice {mode!r} or strict tools"
        )
    if tool_format is None:
        raise ConstraintError("tool_choice", "the served template has no tool format to constrain calls to")
    parallel = parallel_tool_calls and mode != "named"
    if mode == "auto":
        marker = get_format(tool_format.parser).starts[0]
        lark = calls_lark(
            tool_format, callable_tools, strict_names=strict, parallel=parallel, optional_text=marker
        )
        return _validated("text_or_tool_calls", lark, "tools")
    # A call that is demanded is a valid call: every tool's arguments follow its schema.
    every = frozenset(t.name for t in callable_tools)
    lark = calls_lark(tool_format, callable_tools, strict_names=every, parallel=parallel)
    return _validated("tool_calls", lark, "tools")
