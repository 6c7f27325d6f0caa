"""Measuring JSON without parsing it, and without recursion: where a value ends, how deep it
nests, and where a parsed value holds a lone surrogate. `camel_chat.json_input` uses these to
bound what its readers accept; they are pure functions over text.
"""

from __future__ import annotations

import re
from typing import Any

# A JSON string (possibly unterminated at the end of the buffer) or one bracket.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(")?|[\[\]{}]', re.DOTALL)
_SCALAR_END = re.compile(r"[\s,\]}]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_PAIR = re.compile(r"\[\]|\{\}")


def json_path_of_surrogate(value: Any, where: str = "") -> str | None:
    """Where in `value` a string holds a lone surrogate (e.g. ``[3].value``); None if nowhere."""
    stack = [(value, where)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return at or "(top level)"
        elif isinstance(item, dict):
            for key, child in item.items():
                if _SURROGATE.search(key):
                    return f"{at}.{key!r}"
                stack.append((child, f"{at}.{key}"))
        elif isinstance(item, list):
            stack.extend((child, f"{at}[{i}]") for i, child in enumerate(item))
    return None


def scan(text: str, pos: int) -> tuple[int | None, int]:
    """(end, max depth) of the JSON value starting at `text[pos]`, without parsing it.

    `end` is None when the value runs past the end of `text` (more input is needed). The
    scan is iterative, so any depth is measured without recursion; the value is only
    handed to the parser once its depth is known to be safe.
    """
    first = text[pos : pos + 1]
    if first not in ('"', "[", "{"):
        match = _SCALAR_END.search(text, pos)
        return (match.start() if match else None), 0
    depth = deepest = 0
    for match in _TOKEN.finditer(text, pos):
        token = match.group()
        if token[0] == '"':
            if match.group(1) is None:
                return None, deepest  # a string cut by the end of the buffer
            if depth == 0:
                return match.end(), deepest
        elif token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
            if depth <= 0:
                return match.end(), deepest
    return None, deepest


def depth_of(text: str, begin: int, end: int, limit: int) -> int:
    """Nesting depth of the (parsed, so balanced) JSON in `text[begin:end]`, counted up to `limit + 1`.

    No recursion and no Python loop per character: strings are cut out, then each pass
    removes the innermost bracket pairs, so the passes needed are the depth. Records with
    few brackets (nearly all) are settled by two `str.count` calls.
    """
    bound = text.count("[", begin, end) + text.count("{", begin, end)
    if bound <= limit:
        return bound
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text[begin:end]))
    depth = 0
    while brackets and depth <= limit:
        fewer = _PAIR.sub("", brackets)
        if fewer == brackets:
            break  # unbalanced: the parser has already said so
        brackets, depth = fewer, depth + 1
    return depth
