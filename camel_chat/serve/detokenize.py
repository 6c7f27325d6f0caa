"""Generated ids -> text, one token at a time, and where that text must stop.

    IncrementalDecoder   appends each new token's text without re-decoding the whole output
                         (decode a short window before and after the token, keep the difference;
                         an incomplete UTF-8 character is held until its last byte arrives)
    StopStrings          finds the first stop string in the output and how much of its tail might
                         still become one (that tail is withheld from streamed chunks)

The output is decoded on its own (without the prompt) with special tokens skipped, as FastChat's
worker does; the result equals `tokenizer.decode(ids, skip_special_tokens=True)`.
Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

REPLACEMENT = "\ufffd"


class IncrementalDecoder:
    """The text of a growing list of token ids."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.text = ""
        self._prefix = 0  # window start: ids before it are settled into `text`
        self._read = 0  # ids[_prefix:_read] decode to the end of `text`

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def push(self, token_id: int) -> str:
        """Add one token; return the text it appended (possibly "" while a character is incomplete)."""
        self.ids.append(token_id)
        before = self._decode(self.ids[self._prefix : self._read])
        after = self._decode(self.ids[self._prefix :])
        if len(after) > len(before) and not after.endswith(REPLACEMENT):
            new = after[len(before) :]
            self._prefix, self._read = self._read, len(self.ids)
            self.text += new
            return new
        return ""

    def flush(self) -> str:
        """At the end: whatever is still held back (an incomplete character decodes as U+FFFD)."""
        after = self._decode(self.ids[self._prefix :])
        before = self._decode(self.ids[self._prefix : self._read])
        new = after[len(before) :] if len(after) > len(before) else ""
        self._prefix = self._read = len(self.ids)
        self.text += new
        return new


class StopStrings:
    """The stop strings of one request."""

    def __init__(self, stops: Iterable[str]) -> None:
        self.stops = [s for s in dict.fromkeys(stops) if s]
        self.longest = max((len(s) for s in self.stops), default=0)

    def find(self, text: str, new_from: int) -> int | None:
        """Index of the earliest stop string in `text` that ends at or after `new_from`, else None."""
        if not self.stops:
            return None
        start = max(0, new_from - self.longest + 1)
        hits = [i for i in (text.find(s, start) for s in self.stops) if i >= 0]
        return min(hits) if hits else None

    def partial(self, text: str) -> int:
        """Length of the longest tail of `text` that is a proper prefix of some stop string."""
        best = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:n]):
                    best = n
                    break
        return best
