"""Language filtering of conversations (the seed's `optional_clean` step).

This module owns language detection with CLD2 (`pycld2`, which ships its model) and the
filter that keeps one language, skips one, and optionally drops runs of repeated digits.

    english = filter_language(records, tally, keep_lang="en")

The seed used polyglot's `Detector`, a thin wrapper over the same CLD2; `detect_language`
reproduces its decision (a strict pass, then a best-effort pass) without polyglot/PyICU.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import pycld2

from camel_chat.data_preprocessing.tally import Tally

UNKNOWN = "unknown"
KEEP_ALL = "all"

# Code points CLD2 rejects as "invalid UTF-8": C0/C1 controls other than tab, newline and
# carriage return, lone surrogates, and the Unicode noncharacters. One of them anywhere in
# a conversation would otherwise make the whole conversation "unknown".
_NONCHARACTERS = "".join(
    f"{chr(plane + 0xFFFE)}{chr(plane + 0xFFFF)}" for plane in range(0, 0x110000, 0x10000)
)
_CLD2_REJECTED = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef" + _NONCHARACTERS + "]"
)
# Nine or more of the same digit in a row: phone-number spam and counting exercises.
_REPEATED_DIGIT = re.compile(r"(\d)\1{8}")


def _sanitize(text: str) -> str:
    # A space, not nothing, so that words on either side of a control character stay apart.
    return _CLD2_REJECTED.sub(" ", text)


def detect_language(text: str) -> str:
    """The ISO 639 code CLD2 finds for `text` (`en`, `fr`, `zh`, `ko`...), or `"unknown"`.

    As polyglot did for the seed: a strict detection first; if CLD2 says it is not reliable,
    a best-effort one; still not reliable, CLD2's `un`, or a `pycld2.error` give "unknown".
    """
    clean = _sanitize(text)
    try:
        reliable, _, choices = pycld2.detect(clean)
        if not reliable:
            reliable, _, choices = pycld2.detect(clean, bestEffort=True)
    except pycld2.error:
        return UNKNOWN
    code = choices[0][1]
    if not reliable or code == "un":
        return UNKNOWN
    return code


def conversation_text(record: dict) -> str:
    """All message values of a conversation joined with newlines (what detection reads)."""
    return "\n".join(turn["value"] for turn in record["conversations"])


def _has_repeated_digits(record: dict) -> bool:
    return any(_REPEATED_DIGIT.search(turn["value"]) for turn in record["conversations"])


def _drop_reason(record: dict, keep_lang: str, skip_lang: str | None, reduce_rep: bool) -> str | None:
    if keep_lang != KEEP_ALL or skip_lang is not None:
        code = detect_language(conversation_text(record))
        if keep_lang != KEEP_ALL and code != keep_lang:
            return f"language-{code}"
        if code == skip_lang:
            return f"language-{code}"
    if reduce_rep and _has_repeated_digits(record):
        return "repeated-digits"
    return None


def filter_language(
    records: Iterable[dict],
    tally: Tally,
    keep_lang: str = "en",
    skip_lang: str | None = None,
    reduce_rep: bool = False,
) -> list[dict]:
    """Keep the conversations in `keep_lang` (`"all"`: any), minus `skip_lang`, in order.

    A conversation is dropped as `language-<code>` (e.g. `language-ko`, `language-unknown`)
    when its detected language is not `keep_lang` or is `skip_lang`, and, with
    `reduce_rep`, as `repeated-digits` when any message holds a digit repeated 9+ times.
    Detection runs only when a language rule is active, as in the seed.
    """
    kept: list[dict] = []
    for index, record in enumerate(records):
        reason = _drop_reason(record, keep_lang, skip_lang, reduce_rep)
        if reason is None:
            kept.append(record)
            tally.keep()
        else:
            tally.drop(reason, where=str(record.get("id", f"record #{index}")))
    return kept
