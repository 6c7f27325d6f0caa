"""Exact token lengths of renderings, computed from one batched tokenization of the turns.

A message renders as template text (fixed for its role, whether it comes first, and the
system prompt) around one content segment (`lead + content + trained suffix`), and the
encoder tokenizes segments one by one. So the token length of any run of messages is

    preamble(system) + Σ fixed(role, first, system) + Σ len(tokenize(content segment))

which is what `merge.py` needs to split conversations exactly without rendering and
tokenizing every candidate piece. `tests/templates/test_length.py` checks it against
`SegmentEncoder.encode(render(...))` on many conversations.

The content segments are counted by a `TokenCounter` (`counting.py`): by default the
encoder's own batched call; `merge.py` passes `choose_counter(tokenizer)`, the fastest
backend that gives the same ids (sentencepiece for LLaMA-family tokenizers).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from camel_chat.conversation import Role
from camel_chat.templates.counting import TokenCounter
from camel_chat.templates.encode import SegmentEncoder
from camel_chat.templates.render import message_segments, preamble
from camel_chat.templates.template import Template

_SENTINEL = "\x00"


@dataclass(frozen=True)
class MessageShape:
    """A message's rendering with the content cut out: fixed token count and content wrapper.

    `before`/`after` wrap the content into the text the encoder tokenizes (already
    `prepare`d: for dummy-prefix tokenizers the leading space is gone)."""

    fixed_tokens: int
    before: str
    after: str
    strip_lead: bool  # `before` is empty, so a leading space of the content must go

    def content_text(self, content: str) -> str:
        text = self.before + content + self.after
        return text[1:] if self.strip_lead and text.startswith(" ") else text


class LengthModel:
    """Token lengths for one template and tokenizer."""

    def __init__(
        self, template: Template, encoder: SegmentEncoder, counter: TokenCounter | None = None
    ) -> None:
        self.template = template
        self.encoder = encoder
        self.counter = counter
        self.shape = cache(self._shape)
        self.preamble_tokens = cache(self._preamble_tokens)

    def _shape(self, role: Role, first: bool, system: str | None) -> MessageShape:
        segments = message_segments(
            self.template, role, _SENTINEL, first=first, system=system, special=self.encoder.special
        )
        fixed = 0
        before = after = ""
        for seg in segments:
            if _SENTINEL in seg.text:
                before, after = seg.text.split(_SENTINEL)
            else:
                fixed += len(self.encoder.fixed_ids(seg.text))
        if not before:
            return MessageShape(fixed, "", after, strip_lead=self.encoder.dummy_prefix)
        # `prepare` only ever touches the start of a content segment, which is `before` here.
        return MessageShape(fixed, self.encoder.prepare(before, fixed=False), after, strip_lead=False)

    def _preamble_tokens(self, system: str | None) -> int:
        segments = preamble(self.template, system, self.encoder.special)
        return sum(len(self.encoder.fixed_ids(s.text)) for s in segments)

    def content_lengths(self, texts: Sequence[str]) -> list[int]:
        """Token counts of content texts made by `MessageShape.content_text`, one batched call."""
        if self.counter is None:
            return self.encoder.count_texts(texts)
        return self.counter.count(texts)
