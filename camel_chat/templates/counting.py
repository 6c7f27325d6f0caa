"""Token counts of many texts, by the fastest backend that gives the Hugging Face tokenizer's ids.

`merge.py` counts the tokens of every turn of a dataset (tens of millions of tokens), and
that count is most of its run time. Two backends, both exact:

- `SentencePieceCounter`: the `sentencepiece` library on the tokenizer's own
  `tokenizer.model`, all cores (`num_threads`). Chosen for SentencePiece-based tokenizers
  (LLaMA, Mistral) whose ids it reproduces. One known difference is removed at load: a
  converted `tokenizer.json` may rank BPE merges differently from the `.model` scores
  (the Mistral conversion ranks the whitespace runs "▁▁", "▁▁▁▁" first, the `.model` scores
  them last, so indented code splits differently), so the model's piece scores are replaced
  by the Hugging Face merge ranks (needs `protobuf`; without it, text with a run of spaces
  goes to Rust). Where the two still differ it hands the text to the Rust backend: text
  that starts with a space (Hugging Face adds no dummy prefix there) and text with an added
  token anywhere but at its end (Hugging Face splits there). An added token at the end (the
  template's `</s>`) counts as one token. Before trusting it, `choose_counter` compares its
  ids with the Rust tokenizer's on probe texts, and the first `count` on a sample of the
  real texts; any difference switches to the Rust backend for good and says why.
- `RustCounter`: the tokenizer's Rust backend (`encode_batch_fast`), the texts cut into one
  slice per core encoded in threads (the call releases the GIL). That uses every core even
  when `TOKENIZERS_PARALLELISM=false`, which only turns off the library's own thread pool.

    counter = choose_counter(hf_tokenizer)      # counter.name: "sentencepiece" or "rust"
    counter.count(["Hello world", "Bye</s>"])   # → [2, 2] with the LLaMA tokenizer
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

_log = logging.getLogger(__name__)

# Texts compared at construction: code indentation, numbers, unicode, byte fallback,
# an end-of-turn suffix, newlines — the places tokenizer conversions tend to differ.
PROBES = (
    "Hello world. The task is to implement a function.",
    "def f(x):\n    return x * 2\n",
    "Numbers 1234567890 and 3.14159, dates 2024-01-31.",
    "你好，世界 🙂 émigré naïve Straße",
    "tab\there\nnew\n\nlines; quotes \" and ' here</s>",
    "Solution: use a list. </s>",
    "x" * 60,
)
SAMPLE_SIZE = 256  # real texts checked on the first `count` (spread over the input)
CHUNK = 4096  # texts per sentencepiece call: bounds the memory of the id lists


class TokenCounter(Protocol):
    name: str

    def count(self, texts: Sequence[str]) -> list[int]:
        """The number of ids the tokenizer gives each text (no special tokens added)."""
        ...


def cores() -> int:
    """CPUs this process may run on (the affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class RustCounter:
    """Counts with the Hugging Face tokenizer's Rust backend, one slice of texts per core."""

    name = "rust"

    def __init__(self, tokenizer: Any, threads: int | None = None) -> None:
        self.backend = getattr(tokenizer, "backend_tokenizer", None)
        self.tokenizer = tokenizer
        self.threads = threads or cores()

    def ids(self, texts: Sequence[str]) -> list[list[int]]:
        if self.backend is None:  # a slow (pure Python) tokenizer
            return self.tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
        return [e.ids for e in self.backend.encode_batch_fast(list(texts), add_special_tokens=False)]

    def count(self, texts: Sequence[str]) -> list[int]:
        if self.backend is None:
            return [len(ids) for ids in self.ids(texts)]
        texts = list(texts)
        if self.threads == 1 or len(texts) < 2 * self.threads:
            return [len(e) for e in self.backend.encode_batch_fast(texts, add_special_tokens=False)]
        # Contiguous slices of equal character count, so the threads finish together.
        bounds = _balanced_bounds(texts, self.threads)
        slices = [texts[a:b] for a, b in itertools.pairwise(bounds)]
        with ThreadPoolExecutor(len(slices)) as pool:
            parts = pool.map(lambda s: self.backend.encode_batch_fast(s, add_special_tokens=False), slices)
            return [len(e) for part in parts for e in part]


def _balanced_bounds(texts: list[str], parts: int) -> list[int]:
    total = sum(map(len, texts))
    bounds, acc, target = [0], 0, total / parts
    for i, text in enumerate(texts):
        acc += len(text)
        if acc >= target * len(bounds) and len(bounds) < parts:
            bounds.append(i + 1)
    bounds.append(len(texts))
    return sorted(set(bounds))


class SentencePieceCounter:
    """Counts with `sentencepiece` where it matches the Hugging Face tokenizer, else with Rust."""

    name = "sentencepiece"

    def __init__(
        self,
        processor: Any,
        added: dict[str, int],
        fallback: RustCounter,
        threads: int | None = None,
        note: Callable[[str], None] = _log.warning,
        *,
        space_runs: bool = True,
    ) -> None:
        self.sp = processor
        self.space_runs = space_runs  # False: text with "  " goes to Rust (merge ranks not aligned)
        self.added = added
        self.fallback = fallback
        self.threads = threads or cores()
        self.note = note
        self.checked = False
        self.disabled: str | None = None  # why the Rust backend took over, once it has
        alternation = "|".join(re.escape(t) for t in sorted(added, key=len, reverse=True))
        self._added_any = re.compile(alternation) if added else None
        self._added_tail = re.compile(f"(?:{alternation})+") if added else None
        self._first_chars = "".join(sorted({t[0] for t in added}))
        first = self._first_chars
        # A cheap test before the regex: for LLaMA every added token starts with "<".
        self._maybe_added: Callable[[str], bool] = (
            (lambda text: first in text) if len(first) == 1 else (lambda text: any(c in text for c in first))
        )
        self._longest_first = tuple(sorted(added, key=len, reverse=True))
        # Stripping trailing added tokens one by one splits the text as Hugging Face's
        # leftmost-longest matching does, unless two added tokens can overlap.
        self._strip_tail = bool(added) and not _can_overlap(list(added))

    def route(self, text: str) -> tuple[str, list[int]] | None:
        """(body for sentencepiece, ids of the trailing added tokens), or None: Rust's job."""
        if not text or text[0] == " " or (not self.space_runs and "  " in text):
            return None
        if self._added_any is None:
            return text, []
        if not self._strip_tail:
            return self._route_by_search(text)
        tail: list[int] = []
        body = text
        while body.endswith(self._longest_first):  # the common case: the template's "</s>"
            token = next(t for t in self._longest_first if body.endswith(t))
            tail.append(self.added[token])
            body = body[: -len(token)]
        if not body:
            return None
        if self._maybe_added(body) and self._added_any.search(body):
            return None  # an added token inside the text
        tail.reverse()
        return body, tail

    def _route_by_search(self, text: str) -> tuple[str, list[int]] | None:
        assert self._added_any is not None and self._added_tail is not None
        match = self._added_any.search(text)
        if match is None:
            return text, []
        if match.start() == 0 or not self._added_tail.fullmatch(text, match.start()):
            return None  # an added token inside the text, or nothing before it
        tail = [self.added[m.group()] for m in self._added_any.finditer(text, match.start())]
        return text[: match.start()], tail

    def ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Ids as this counter sees them (sentencepiece where routed there), for checks."""
        routed = [self.route(t) for t in texts]
        own = [r[0] for r in routed if r is not None]
        own_ids = iter(self.sp.encode(own, num_threads=self.threads)) if own else iter(())
        rest = iter(self.fallback.ids([t for t, r in zip(texts, routed, strict=True) if r is None]))
        return [next(rest) if r is None else next(own_ids) + r[1] for r in routed]

    def agrees(self, texts: Sequence[str]) -> str | None:
        """None when the ids equal the Rust tokenizer's on `texts`, else the first difference."""
        for text, mine, theirs in zip(texts, self.ids(texts), self.fallback.ids(texts), strict=True):
            if mine != theirs:
                return f"ids differ from the Hugging Face tokenizer on {text[:60]!r}"
        return None

    def count(self, texts: Sequence[str]) -> list[int]:
        if not self.checked and texts:
            self.checked = True
            step = max(1, len(texts) // SAMPLE_SIZE)
            reason = self.agrees(list(texts[::step][:SAMPLE_SIZE]))
            if reason is not None:
                self.disabled = reason
                self.note(f"token counts: sentencepiece disabled ({reason}); using the Rust tokenizer")
        if self.disabled is not None:
            return self.fallback.count(texts)
        out: list[int] = [0] * len(texts)
        rest: list[int] = []  # indices for the Rust backend
        in_flight: deque[tuple[list[int], Future[list[list[int]]]]] = deque()
        # sentencepiece releases the GIL: one chunk is encoded in a helper thread (on all
        # cores) while this thread routes the next, so the Python work hides behind it.
        with ThreadPoolExecutor(1) as pool:
            for start in range(0, len(texts), CHUNK):
                bodies: list[str] = []
                where: list[int] = []  # index in `texts` of each body
                for i in range(start, min(start + CHUNK, len(texts))):
                    routed = self.route(texts[i])
                    if routed is None:
                        rest.append(i)
                    else:
                        bodies.append(routed[0])
                        where.append(i)
                        out[i] = len(routed[1])
                in_flight.append((where, pool.submit(self.sp.encode, bodies, num_threads=self.threads)))
                if len(in_flight) > 1:  # at most two chunks of id lists alive
                    _add_lengths(out, *in_flight.popleft())
            while in_flight:
                _add_lengths(out, *in_flight.popleft())
        for i, n in zip(rest, self.fallback.count([texts[i] for i in rest]), strict=True):
            out[i] = n
        return out


def _add_lengths(out: list[int], where: list[int], encoded: Future[list[list[int]]]) -> None:
    for i, ids in zip(where, encoded.result(), strict=True):
        out[i] += len(ids)


def _can_overlap(tokens: list[str]) -> bool:
    """True if one token contains another, or a token's end is another's start."""
    for a in tokens:
        for b in tokens:
            if a == b:
                continue
            if b in a or any(a.endswith(b[:k]) for k in range(1, len(b))):
                return True
    return False


def choose_counter(
    tokenizer: Any, threads: int | None = None, note: Callable[[str], None] = _log.warning
) -> TokenCounter:
    """The fastest exact counter for a Hugging Face tokenizer; `note` hears why if not sentencepiece."""
    rust = RustCounter(tokenizer, threads)
    reason = _sentencepiece_unusable(tokenizer)
    if reason is None:
        try:
            processor, aligned = load_processor(tokenizer)
        except (ImportError, OSError, RuntimeError, ValueError) as exc:
            reason = f"cannot load tokenizer.model ({exc})"
        else:
            added = _added(tokenizer)
            counter = SentencePieceCounter(processor, added, rust, threads, note, space_runs=aligned)
            reason = counter.agrees(PROBES)
            if reason is None:
                return counter
    note(f"token counts: using the Rust tokenizer on all cores ({reason})")
    return rust


def load_processor(tokenizer: Any) -> tuple[Any, bool]:
    """The tokenizer's SentencePiece model with its BPE scores set to the Hugging Face merge
    ranks; the bool says whether that was done (else: the `.model` as it is)."""
    import sentencepiece

    path = _model_file(tokenizer)
    assert path is not None  # checked by _sentencepiece_unusable
    raw = path.read_bytes()
    try:
        from sentencepiece import sentencepiece_model_pb2
    except ImportError:  # protobuf is missing
        return sentencepiece.SentencePieceProcessor(model_proto=raw), False
    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    if model.get("type") != "BPE":
        return sentencepiece.SentencePieceProcessor(model_proto=raw), True  # unigram: same scores
    rank: dict[str, int] = {}
    for i, merge in enumerate(model["merges"]):
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        rank.setdefault(left + right, i)
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(raw)
    normal = sentencepiece_model_pb2.ModelProto.SentencePiece.NORMAL
    for piece in proto.pieces:
        if piece.piece in rank:
            piece.score = -float(rank[piece.piece])
        elif piece.type == normal and len(piece.piece) > 1:
            piece.score = -1e12  # no Hugging Face merge makes it: merge it last, if ever
    return sentencepiece.SentencePieceProcessor(model_proto=proto.SerializeToString()), True


def _model_file(tokenizer: Any) -> Path | None:
    folder = Path(str(tokenizer.name_or_path))
    for candidate in (getattr(tokenizer, "vocab_file", None), folder / "tokenizer.model"):
        if candidate and str(candidate).endswith(".model") and Path(candidate).is_file():
            return Path(candidate)
    return None


def _added(tokenizer: Any) -> dict[str, int]:
    return {tok.content: i for i, tok in getattr(tokenizer, "added_tokens_decoder", {}).items()}


def _sentencepiece_unusable(tokenizer: Any) -> str | None:
    """Why sentencepiece cannot stand in for this tokenizer, or None if it may (probes decide)."""
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        return "not a fast tokenizer"
    if _model_file(tokenizer) is None:
        return "no tokenizer.model: not a SentencePiece tokenizer"
    try:
        import sentencepiece  # noqa: F401
    except ImportError:
        return "the sentencepiece package is not installed"
    for token in getattr(tokenizer, "added_tokens_decoder", {}).values():
        # Tokens that eat neighbouring spaces or match normalized text split differently.
        if token.lstrip or token.rstrip or token.single_word or token.normalized:
            return f"added token {token.content!r} has strip/word/normalized options"
    return None
