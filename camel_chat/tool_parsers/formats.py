"""The call formats the parsers know, by the names templates and `--tool-call-parser` use.

    hermes       <tool_call>{"name": ..., "arguments": {...}}</tool_call>, anywhere in the
                 reply (Hermes 2/3, Qwen2.5/Qwen3; our `chatml` template)
    llama3_json  {"name": ..., "parameters": {...}} (or "arguments"; optional
                 <|python_tag|> and "type": "function") at the start of the reply or of a
                 line, several separated by newlines or ";" (Llama 3.x; our `llama-3`)
    kagent       {"task_name": "...", "command": {"name": ..., "args": {...}}} at the
                 start of the reply or of a line; task_name is the reply's text
                 (KAgentLMs, KAgentSys; our `kagent`)

Names follow OpenAI's function-name rule, so a head never has to decode an escaped name.
"""

from __future__ import annotations

import regex

from camel_chat.errors import CamelChatError
from camel_chat.tool_parsers.stream import CallFormat

_NAME = r'"(?P<name>[A-Za-z0-9_-]{1,64})"'
_JSON_STRING = r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"'


def _key(key: str) -> str:
    return rf'"{key}"\s*:\s*'


HERMES = CallFormat(
    name="hermes",
    starts=("<tool_call>",),
    line_start=False,
    head=regex.compile(
        r"<tool_call>\s*\{\s*" + _key("name") + _NAME + r"\s*,\s*" + _key("arguments") + r"\{"
    ),
    tail=regex.compile(r"\s*\}\s*</tool_call>"),
)

LLAMA3_JSON = CallFormat(
    name="llama3_json",
    starts=("{", "<|python_tag|>"),
    line_start=True,
    head=regex.compile(
        r"(?:<\|python_tag\|>\s*)?\{\s*(?:"
        + _key("type")
        + r'"function"\s*,\s*)?'
        + _key("name")
        + _NAME
        + r'\s*,\s*"(?:parameters|arguments)"\s*:\s*\{'
    ),
    tail=regex.compile(r"\s*\}"),
)

KAGENT = CallFormat(
    name="kagent",
    starts=("{",),
    line_start=True,
    head=regex.compile(
        r"\{\s*(?:"
        + _key("task_name")
        + rf"(?P<content>{_JSON_STRING})\s*,\s*)?"
        + _key("command")
        + r"\{\s*"
        + _key("name")
        + _NAME
        + r"\s*,\s*"
        + _key("args")
        + r"\{"
    ),
    tail=regex.compile(r"\s*\}\s*\}"),
)

FORMATS: dict[str, CallFormat] = {f.name: f for f in (HERMES, LLAMA3_JSON, KAGENT)}


def list_parsers() -> list[str]:
    return list(FORMATS)


def get_format(name: str) -> CallFormat:
    """The format called `name`; an unknown name raises `CamelChatError` listing the known ones."""
    try:
        return FORMATS[name]
    except KeyError:
        raise CamelChatError(
            f"unknown tool-call parser {name!r}; known parsers: {', '.join(FORMATS)}"
        ) from None
