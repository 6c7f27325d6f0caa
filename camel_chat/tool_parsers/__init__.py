"""Tool-call parsers: generated text → content + tool calls, streamed or at once (light: no torch).

    from camel_chat.tool_parsers import parse, stream
    reply = parse("hermes", text, tool_names={"weather"})    # ParsedReply(content, tool_calls)
    s = stream("hermes", tool_names={"weather"})              # per request
    for piece in pieces: deltas = s.feed(piece)               # ContentDelta / CallStart / ArgumentsDelta
    deltas = s.finish()

Each template names its parser (`get_template(name).tools.parser`); a foreign model's own
chat template gets the parser of its family by name, like vLLM's `--tool-call-parser`.
This is a package of its own, not part of templates/: serving and evaluation use it for
models whose template is not ours, and templates only name a parser, they never run one.
`tool_names` (the request's tools) makes a call to an undeclared tool plain text.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from camel_chat.tool_parsers.formats import CallFormat, get_format, list_parsers
from camel_chat.tool_parsers.stream import (
    ArgumentsDelta,
    CallStart,
    ContentDelta,
    Delta,
    ParsedCall,
    ParsedReply,
    ToolCallStream,
    new_call_id,
)


def stream(
    name: str, *, tool_names: Collection[str] | None = None, make_id: Callable[[], str] = new_call_id
) -> ToolCallStream:
    """A streaming parser for one reply, in the format `name`."""
    return ToolCallStream(get_format(name), tool_names=tool_names, make_id=make_id)


def parse(
    name: str,
    text: str,
    *,
    tool_names: Collection[str] | None = None,
    make_id: Callable[[], str] = new_call_id,
) -> ParsedReply:
    """Parse a whole reply (the same machine as `stream`, fed once)."""
    s = stream(name, tool_names=tool_names, make_id=make_id)
    s.feed(text)
    s.finish()
    return s.result()


__all__ = [
    "ArgumentsDelta",
    "CallFormat",
    "CallStart",
    "ContentDelta",
    "Delta",
    "ParsedCall",
    "ParsedReply",
    "ToolCallStream",
    "get_format",
    "list_parsers",
    "parse",
    "stream",
]
