"""Cleaning raw ShareGPT crawls: HTML to markdown, sample validation and deduplication.

This module owns the seed's `clean_html_all` step (FastChat's `clean_sharegpt`, camel_chat
variant) as pure functions over records `{"id", "conversations": [{"from", "value"}...]}`
whose values are ChatGPT-page HTML. Reading and writing the files is the caller's job.

    cleaned = clean_sharegpt(records, tally, workers=8)

Each dropped record is counted in the `Tally` under one of `DROP_REASONS`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import markdownify
from bs4.builder import ParserRejectedMarkup

from camel_chat.data_preprocessing.tally import Tally

# A conversation whose raw text mentions these (case-insensitive) is dropped: the seed
# removes answers that talk about the model that produced them.
BLOCKED_WORDS: tuple[str, ...] = ("openai", "chatgpt")

ROLES: tuple[str, str] = ("human", "gpt")

DROP_REASONS: tuple[str, ...] = (
    "malformed-record",
    "plugins",
    "too-short",
    "wrong-format",
    "blocked-words",
    "parser-error",
    "empty-turn",
    "duplicate-id",
    "duplicate-content",
)

# Opening tags only; the converter ignores the orphaned closing tags. Removing <div> keeps
# the indentation of ChatGPT code blocks, removing <span> keeps underscores in them.
_DIV_OPEN = re.compile(r"<div.*?>")
_SPAN_OPEN = re.compile(r"<span.*?>")
# ChatGPT's code header is copied as "<language>Copy code<code>" inside one fence. The
# language is one word (python, c++, objective-c...) so a match cannot run across fences,
# which the original `(.*?)` could.
_COPIED_CODE = re.compile(r"```\s*([^\s`]*)(?:Copy code)+(.+?)\s*?```", re.DOTALL)
_REGENERATE_COUNTER = re.compile(r"\d+ / \d+")
_COPY_CHARS = re.compile(r"Copy\d+ chars / \d+ words")
_EMPTY_COPIED_CODE = re.compile(r"```\s*[^\s`]*Copy code\s*```")


def _rewrite_copied_code(match: re.Match[str]) -> str:
    language, code = match.group(1), match.group(2)
    if not code.strip():
        # An empty copied block: left as is so the empty-block removal deletes it whole.
        return match.group(0)
    # Newlines between the header and the code are layout, indentation is code.
    code = code.lstrip("\n")
    return f"```{language}\n{code}\n```"


def html_to_markdown(html: str) -> str:
    """Convert one ShareGPT message from HTML to markdown, removing ChatGPT page noise.

    Steps, in the seed's order: drop opening `<div>`/`<span>` tags; markdownify with ATX
    headings; turn copied code blocks (`pythonCopy code...`) into fenced blocks tagged with
    their language; drop a leading regenerate counter (`2 / 2`); drop `Copy<n> chars / <n>
    words`; drop empty copied blocks; replace each triple newline by one newline (a single
    `str.replace` pass, as the seed does, so four newlines become two); strip.

    Raises what the HTML parser raises (bs4 `ParserRejectedMarkup`, `AssertionError`,
    `RecursionError` on absurdly deep nesting); `clean_sample` turns those into a drop.
    """
    text = _DIV_OPEN.sub("", html)
    text = _SPAN_OPEN.sub("", text)
    # markdownify >= 1.0 defaults to underlined (setext) h1/h2; ATX `#` headings are what a
    # chat model should learn and what the seed's readers expect.
    text = markdownify.markdownify(text, heading_style=markdownify.ATX).strip()
    text = _COPIED_CODE.sub(_rewrite_copied_code, text)
    counter = _REGENERATE_COUNTER.match(text)
    if counter:
        text = text[counter.end() :]
    text = _COPY_CHARS.sub("", text)
    text = _EMPTY_COPIED_CODE.sub("", text)
    return text.replace("\n\n\n", "\n").strip()


def contains_blocked_words(text: str) -> bool:
    """True when `text` mentions any of `BLOCKED_WORDS`, ignoring case."""
    lowered = text.lower()
    return any(word in lowered for word in BLOCKED_WORDS)


def _is_well_formed(record: Any) -> bool:
    if not isinstance(record, dict) or not isinstance(record.get("id"), (str, int)):
        return False
    turns = record.get("conversations")
    if not isinstance(turns, list):
        return False
    return all(
        isinstance(t, dict) and isinstance(t.get("from"), str) and isinstance(t.get("value"), str)
        for t in turns
    )


def _trim_ends(turns: list[dict]) -> list[dict] | None:
    """Drop a leading non-human turn and a trailing human turn; None when ≤1 turn is left."""
    if len(turns) <= 1:
        return None
    if turns[0]["from"] != ROLES[0]:
        turns = turns[1:]
    if len(turns) <= 1:
        return None
    if turns[-1]["from"] == ROLES[0]:
        turns = turns[:-1]
    return turns if len(turns) > 1 else None


def clean_sample(record: Any) -> tuple[dict | None, str | None]:
    """Clean one raw ShareGPT record: `(cleaned, None)` or `(None, drop reason)`.

    Seed semantics: ≤1 message after dropping a leading non-human turn and a trailing
    human turn is `too-short`; roles must alternate human/gpt from the first turn
    (`wrong-format`); a raw value containing a blocked word drops the whole sample
    (`blocked-words`); a parser failure is `parser-error`. Checks run turn by turn in
    that order, so the first offending turn decides the reason.

    Differences from the seed: a turn whose cleaned value is empty drops the sample
    (`empty-turn`; the seed let empty turns through, and an empty answer teaches the model
    to say nothing); a non-null `plugins` field drops it (`plugins`, as FastChat HEAD
    does); a record that is not `{"id", "conversations": [{"from": str, "value": str}]}`
    is `malformed-record` instead of a crash. The input is never modified; the result is
    a shallow copy with new turn dicts, other keys (e.g. `model`) kept.
    """
    if not _is_well_formed(record):
        return None, "malformed-record"
    if record.get("plugins") is not None:
        return None, "plugins"
    turns = _trim_ends(record["conversations"])
    if turns is None:
        return None, "too-short"
    cleaned_turns = []
    for i, turn in enumerate(turns):
        if turn["from"] != ROLES[i % 2]:
            return None, "wrong-format"
        if contains_blocked_words(turn["value"]):
            return None, "blocked-words"
        try:
            value = html_to_markdown(turn["value"])
        except (ParserRejectedMarkup, AssertionError, RecursionError):
            return None, "parser-error"
        if not value:
            return None, "empty-turn"
        cleaned_turns.append({**turn, "value": value})
    return {**record, "conversations": cleaned_turns}, None


def _where(record: Any, index: int) -> str:
    if isinstance(record, dict) and isinstance(record.get("id"), (str, int)):
        return str(record["id"])
    return f"record #{index}"


def _clean_all(records: list[Any], workers: int) -> list[tuple[dict | None, str | None]]:
    if workers <= 1 or len(records) < 2:
        return [clean_sample(r) for r in records]
    # Chunks amortise pickling; four chunks per worker keeps the pool balanced when some
    # conversations are much longer than others. `map` returns results in input order.
    chunksize = max(1, min(512, len(records) // (workers * 4)))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(clean_sample, records, chunksize=chunksize))


def clean_sharegpt(records: Iterable[Any], tally: Tally, workers: int = 1) -> list[dict]:
    """Clean every record (in `workers` processes when > 1), then deduplicate, in input order.

    Deduplication is sequential and follows camel_chat: a sample whose `id` was already
    accepted is `duplicate-id`; otherwise one whose (2nd message text, number of messages)
    was already accepted is `duplicate-content`. Only accepted samples register keys.
    """
    records = list(records)
    results = _clean_all(records, workers)
    seen_ids: set[str | int] = set()
    seen_content: set[tuple[str, int]] = set()
    kept: list[dict] = []
    for index, (record, (sample, reason)) in enumerate(zip(records, results, strict=True)):
        where = _where(record, index)
        if sample is None:
            tally.drop(reason or "malformed-record", where=where)
            continue
        content_key = (sample["conversations"][1]["value"], len(sample["conversations"]))
        if sample["id"] in seen_ids:
            tally.drop("duplicate-id", where=where)
        elif content_key in seen_content:
            tally.drop("duplicate-content", where=where)
        else:
            seen_ids.add(sample["id"])
            seen_content.add(content_key)
            kept.append(sample)
            tally.keep()
    return kept
