"""The one incremental state machine behind every tool-call parser.

`ToolCallStream(fmt)` is fed the generated text in pieces (`feed`) and closed (`finish`);
it returns deltas as soon as they are certain: `ContentDelta` for prose, `CallStart`
(index, id, name) when a call is certain, then `ArgumentsDelta` fragments of the call's
raw JSON arguments. The non-streaming parse is the same machine fed once, so streamed and
non-streamed results agree by construction: concatenated fragments equal the arguments,
and a call is never announced and later taken back.

A call is certain once its *head* matched in full: the text from the call's opening (e.g.
`<tool_call>`) through the `{` that opens its arguments (`CallFormat.head`, a regex
matched with partial matching, so "could still become a call" is a precise question).
Until then the text is held; if the head cannot match, it is prose (`"use the
<tool_call> tag"` is content). Inside the arguments, a small JSON scanner (strings,
escapes, nesting) finds the closing brace; the format's `tail` (e.g. `}</tool_call>`)
follows. Whitespace right before a call is dropped; prose after a call is joined to
earlier prose with a newline.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Literal

import regex

WHITESPACE = " \t\r\n"


@dataclass(frozen=True)
class CallFormat:
    """How one family writes calls. `head` must end by matching the arguments' `{` and
    capture `name` (and optionally `content`: a JSON string that is the reply's text)."""

    name: str
    starts: tuple[str, ...]  # texts a call can begin with
    line_start: bool  # calls begin only at the start of the reply, a line, or after a call
    head: regex.Pattern[str]
    tail: regex.Pattern[str]


@dataclass(frozen=True)
class ContentDelta:
    text: str


@dataclass(frozen=True)
class CallStart:
    index: int
    id: str
    name: str


@dataclass(frozen=True)
class ArgumentsDelta:
    index: int
    text: str


Delta = ContentDelta | CallStart | ArgumentsDelta


@dataclass
class ParsedCall:
    """A call as generated: `arguments` is the raw JSON text; `complete` is False when the
    output ended inside the arguments (e.g. at max_tokens)."""

    id: str
    name: str
    arguments: str = ""
    complete: bool = False

    def arguments_object(self) -> dict[str, Any] | None:
        """The decoded arguments, or None when they are not a JSON object."""
        try:
            value = json.loads(self.arguments)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


@dataclass
class ParsedReply:
    content: str | None
    tool_calls: list[ParsedCall] = field(default_factory=list)


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


class ToolCallStream:
    """Parse one generated reply incrementally (see the module docstring)."""

    def __init__(
        self,
        fmt: CallFormat,
        *,
        tool_names: Collection[str] | None = None,
        make_id: Callable[[], str] = new_call_id,
    ) -> None:
        self.fmt = fmt
        self.tool_names = None if tool_names is None else frozenset(tool_names)
        self.make_id = make_id
        self.calls: list[ParsedCall] = []
        self._content: list[str] = []
        self._buf = ""
        self._state: Literal["text", "head", "args", "tail"] = "text"
        self._ws = ""  # whitespace held back: it is dropped if a call follows
        self._line_ok = True  # a line-start format may open a call here
        self._after_call = False  # held whitespace is a separator, not content
        self._depth = 0
        self._in_string = False
        self._escape = False
        self._out: list[Delta] = []

    @property
    def content(self) -> str | None:
        text = "".join(self._content)
        return text or None

    def feed(self, text: str) -> list[Delta]:
        self._buf += text
        while self._step():
            pass
        return self._take()

    def finish(self) -> list[Delta]:
        """The output ended: what was held back is prose, an open call stays incomplete."""
        if self._state in ("text", "head"):
            if self._buf:
                self._emit(self._take_ws() + self._buf)
            elif self._ws and not self._after_call:
                self._emit(self._ws)
        elif self._state == "tail":
            self.calls[-1].complete = True
        self._buf = self._ws = ""
        return self._take()

    def result(self) -> ParsedReply:
        return ParsedReply(self.content, list(self.calls))

    # --- states -------------------------------------------------------------------------

    def _step(self) -> bool:
        """Advance one state; False when more text is needed."""
        if self._state == "text":
            return self._scan_text()
        if self._state == "head":
            return self._match_head()
        if self._state == "args":
            return self._scan_arguments()
        return self._match_tail()

    def _may_start(self) -> bool:
        return not self.fmt.line_start or self._line_ok or "\n" in self._ws

    def _scan_text(self) -> bool:
        buf, pieces = self._buf, []
        for i, ch in enumerate(buf):
            if ch in WHITESPACE or (ch == ";" and self._after_call):
                self._ws += ch  # ";" separates calls in Llama's JSON format
                continue
            if self._may_start():
                rest = buf[i:]
                if any(rest.startswith(s) for s in self.fmt.starts):
                    self._buf, self._state = rest, "head"
                    self._emit("".join(pieces))
                    return True
                if any(s.startswith(rest) for s in self.fmt.starts):  # maybe a start, cut short
                    self._buf = rest
                    self._emit("".join(pieces))
                    return False
            pieces.append(self._take_ws() + ch)
            self._line_ok = False
        self._buf = ""
        self._emit("".join(pieces))
        return False

    def _match_head(self) -> bool:
        m = self.fmt.head.match(self._buf, partial=True)
        if m is not None and m.partial:
            return False
        if m is None or (self.tool_names is not None and m["name"] not in self.tool_names):
            # Not a call after all: its first character is prose, and scanning goes on after it.
            self._emit(self._take_ws() + self._buf[0])
            self._line_ok = False
            self._buf, self._state = self._buf[1:], "text"
            return True
        self._ws = ""
        content = m.groupdict().get("content")
        if content:
            self._emit(self._join() + json.loads(content))
        call = ParsedCall(self.make_id(), m["name"])
        self.calls.append(call)
        self._out.append(CallStart(len(self.calls) - 1, call.id, call.name))
        self._buf, self._state = self._buf[m.end() - 1 :], "args"
        self._depth, self._in_string, self._escape = 0, False, False
        return True

    def _scan_arguments(self) -> bool:
        buf = self._buf
        for i, ch in enumerate(buf):
            if self._in_string:
                if self._escape:
                    self._escape = False
                elif ch == "\\":
                    self._escape = True
                elif ch == '"':
                    self._in_string = False
            elif ch == '"':
                self._in_string = True
            elif ch in "{[":
                self._depth += 1
            elif ch in "}]":
                self._depth -= 1
                if self._depth == 0:
                    self._arguments(buf[: i + 1])
                    self._buf, self._state = buf[i + 1 :], "tail"
                    return True
        self._arguments(buf)
        self._buf = ""
        return False

    def _match_tail(self) -> bool:
        m = self.fmt.tail.match(self._buf, partial=True)
        if m is not None and m.partial:
            return False
        # A broken tail still ends the call (its arguments are whole); the rest is scanned as text.
        self._buf = self._buf[m.end() :] if m is not None else self._buf
        self.calls[-1].complete = True
        self._state, self._line_ok, self._after_call, self._ws = "text", True, True, ""
        return True

    # --- output -------------------------------------------------------------------------

    def _join(self) -> str:
        return "\n" if self._content else ""

    def _take_ws(self) -> str:
        """The held whitespace before a prose character (after a call: a newline join)."""
        ws, self._ws = self._ws, ""
        if self._after_call:
            self._after_call = False
            return self._join()
        return ws

    def _emit(self, text: str) -> None:
        if not text:
            return
        self._content.append(text)
        if self._out and isinstance(self._out[-1], ContentDelta):
            self._out[-1] = ContentDelta(self._out[-1].text + text)
        else:
            self._out.append(ContentDelta(text))

    def _arguments(self, text: str) -> None:
        if text:
            self.calls[-1].arguments += text
            self._out.append(ArgumentsDelta(len(self.calls) - 1, text))

    def _take(self) -> list[Delta]:
        out, self._out = self._out, []
        return out
