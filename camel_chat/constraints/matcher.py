"""Per-sequence matchers: the allowed-token bitmask for the next step, consume, finished.

    backend = GrammarBackend(tokenizer, stop_token_ids=[im_end_id])   # once per model (~1-3 s)
    matcher = backend.matcher(constraint)                             # per request (~1 ms)
    bitmask = backend.allocate(batch_size)                            # int32 [batch, ceil(V/32)]
    backend.fill(bitmask, [(matcher, row), ...])                      # all constrained rows, in parallel
    logits[row][~allowed(bitmask[row], V)] = -inf; token = sample(...)
    matcher.consume(token); matcher.is_finished

Engine-agnostic: numpy bitmasks (torch can wrap them without a copy), no model code. The
batch fill runs llguidance's thread pool with the GIL released, so a batched decode step
can compute masks while the forward pass runs and only waits for them before sampling.
After the grammar is complete only the stop tokens are allowed, so a constrained reply
ends where the template's end of turn would end it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import llguidance
import llguidance.numpy as llg_numpy
import numpy as np

from camel_chat.constraints.request import Constraint
from camel_chat.errors import CamelChatError


class GrammarBackend:
    """llguidance's view of one tokenizer (a Hugging Face fast tokenizer or its JSON)."""

    def __init__(self, tokenizer: Any, *, stop_token_ids: Sequence[int] | None = None) -> None:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise CamelChatError("constrained decoding needs a fast (Rust) tokenizer")
        stops = list(stop_token_ids or [tokenizer.eos_token_id])
        self.tokenizer = llguidance.LLTokenizer(backend.to_str(), eos_token=stops)
        self.vocab_size = self.tokenizer.vocab_size
        self.executor = llguidance.LLExecutor()

    def matcher(self, constraint: Constraint) -> SequenceMatcher:
        return SequenceMatcher(
            llguidance.LLMatcher(self.tokenizer, constraint.grammar, log_level=0), self.vocab_size
        )

    def allocate(self, batch_size: int) -> np.ndarray:
        return llg_numpy.allocate_token_bitmask(batch_size, self.vocab_size)

    def fill(self, bitmask: np.ndarray, rows: Sequence[tuple[SequenceMatcher, int]]) -> None:
        """Fill `bitmask[row]` for each (matcher, row) at once, off the GIL."""
        llg_numpy.fill_next_token_bitmask_par(self.executor, [(m.matcher, row) for m, row in rows], bitmask)


class SequenceMatcher:
    """One sequence's grammar state."""

    def __init__(self, matcher: llguidance.LLMatcher, vocab_size: int) -> None:
        self.matcher = matcher
        self.vocab_size = vocab_size
        self._mask = llg_numpy.allocate_token_bitmask(1, vocab_size)

    def bitmask(self) -> np.ndarray:
        """This sequence's mask for the next token (int32, one bit per token)."""
        llg_numpy.fill_next_token_bitmask(self.matcher, self._mask, 0)
        return self._mask[0]

    def allowed(self, width: int | None = None) -> np.ndarray:
        """The next token's allowed set as booleans over `width` logits (default: the vocab)."""
        return allowed(self.bitmask(), width or self.vocab_size)

    def consume(self, token: int) -> bool:
        """Advance by the sampled token; False (and `error` set) if the grammar forbids it."""
        return self.matcher.consume_token(token)

    @property
    def is_finished(self) -> bool:
        """The grammar is complete: nothing but a stop token may follow (or one was consumed)."""
        return self.matcher.is_stopped()

    @property
    def is_accepting(self) -> bool:
        """A stop token may come now (the output so far is a whole document)."""
        return self.matcher.is_accepting()

    @property
    def error(self) -> str:
        return self.matcher.get_error()


def allowed(bitmask_row: np.ndarray, width: int) -> np.ndarray:
    """Unpack one bitmask row into booleans over `width` logits (bits past the vocab are False)."""
    bits = np.unpackbits(bitmask_row.view(np.uint8), bitorder="little").astype(bool)
    if width <= bits.size:
        return bits[:width]
    return np.concatenate([bits, np.zeros(width - bits.size, dtype=bool)])
