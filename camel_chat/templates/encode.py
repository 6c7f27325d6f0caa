"""Segments → token ids and labels, one segment at a time, so the two never drift apart.

Each segment is tokenized on its own (template text once per tokenizer, cached) and the
ids are concatenated; a trainable segment's ids are its labels, every other id gets
`IGNORE_INDEX`. The length of a rendering is therefore the sum of its segments' lengths,
which `merge.py` uses to split conversations exactly.

SentencePiece tokenizers that add a dummy-prefix space ("▁") at the start of every text
would otherwise count each segment boundary's space twice; for them one leading space is
dropped before tokenizing (the dummy prefix stands for it) and template text loses its
trailing spaces (the next segment's prefix stands for them). With this rule a LLaMA
tokenizer yields, segment by segment, the ids the original "legacy" tokenizer produced for
the whole string.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from camel_chat.templates.render import Segment
from camel_chat.templates.template import SpecialTokens

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]

    @property
    def num_trainable(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def adds_dummy_prefix(tokenizer: Any) -> bool:
    """True for SentencePiece-style tokenizers that turn "a" into "▁a"."""
    ids = tokenizer("a", add_special_tokens=False)["input_ids"]
    first = tokenizer.convert_ids_to_tokens(ids[:1])
    return bool(first) and first[0].startswith("▁")


class SegmentEncoder:
    """Tokenizes segments for one tokenizer, caching template text."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.special = SpecialTokens.of(tokenizer)
        self.dummy_prefix = adds_dummy_prefix(tokenizer)
        self._fixed: dict[str, list[int]] = {}

    def prepare(self, text: str, *, fixed: bool) -> str:
        """The text actually handed to the tokenizer for a segment (see module docstring)."""
        if not self.dummy_prefix:
            return text
        if text.startswith(" "):
            text = text[1:]
        return text.rstrip(" ") if fixed else text

    def encode_texts(self, texts: Sequence[str]) -> list[list[int]]:
        """One batched tokenizer call (the fast tokenizers spread it over all cores)."""
        if not texts:
            return []
        # verbose=False: long turns are measured on purpose, not fed to a model here.
        out = self.tokenizer(
            list(texts), add_special_tokens=False, return_attention_mask=False, verbose=False
        )
        return out["input_ids"]

    def count_texts(self, texts: Sequence[str]) -> list[int]:
        """Token counts only: the Rust tokenizer's batch call without building id lists,
        which is most of the cost of `encode_texts` on millions of tokens."""
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        if backend is None:  # a slow (pure Python) tokenizer
            return [len(ids) for ids in self.encode_texts(texts)]
        return [len(e) for e in backend.encode_batch_fast(list(texts), add_special_tokens=False)]

    def fixed_ids(self, text: str) -> list[int]:
        ids = self._fixed.get(text)
        if ids is None:
            prepared = self.prepare(text, fixed=True)
            ids = self.encode_texts([prepared])[0] if prepared else []
            self._fixed[text] = ids
        return ids

    def segment_ids(self, segments: Sequence[Segment]) -> list[list[int]]:
        """Ids of each segment; the message segments are tokenized in one batched call."""
        out: list[list[int] | None] = [None] * len(segments)
        pending: list[int] = []
        for i, seg in enumerate(segments):
            if seg.message is None:
                out[i] = self.fixed_ids(seg.text)
            else:
                pending.append(i)
        texts = [self.prepare(segments[i].text, fixed=False) for i in pending]
        for i, ids in zip(pending, self.encode_texts(texts), strict=True):
            out[i] = ids
        return out  # type: ignore[return-value]

    def encode(self, segments: Sequence[Segment]) -> Encoded:
        """Token ids and labels for a rendered conversation."""
        input_ids: list[int] = []
        labels: list[int] = []
        for seg, ids in zip(segments, self.segment_ids(segments), strict=True):
            input_ids += ids
            labels += ids if seg.trainable else [IGNORE_INDEX] * len(ids)
        return Encoded(input_ids, labels)
