"""Prompt logprobs (`echo` + `logprobs`): what evaluation harnesses read for every prompt token.

    PromptLogprobs.compute(logits, ids, top, tokenizer)   one row's logits [L, vocab] -> the
                          OpenAI completions fields for its L prompt tokens: `tokens`,
                          `token_logprobs` (the first null: nothing predicts it), `top_logprobs`
                          (the first null; else the prompt token itself plus the `top` most likely,
                          as vLLM's prompt_logprobs) and `text_offset` (into the decoded prompt)
    score_groups(lengths, vocab)   which waiting prompts share one forward pass (a logits budget)
    score_prompts(model, seqs, ...)  ONE right-padded forward pass for a group of requests that
                          need no KV cache afterwards (at most one new token): prompt logprobs, and
                          the one token drawn from the last prompt position

The values are `log_softmax` of the model's raw logits in float32, position i scoring token i+1:
exactly what a direct transformers forward pass gives (a test checks it to 1e-4). Right padding
leaves every real token's attention and positions as they are alone (see `forward_rows`).
Runs on the engine thread; imports torch lazily.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from camel_chat.serve.detokenize import IncrementalDecoder
from camel_chat.serve.prefill import prefill_groups
from camel_chat.serve.sampling import choose_tokens

if TYPE_CHECKING:
    from camel_chat.serve.request_state import RequestState

#: Logits one scoring forward pass may hold (float32 elements: 2**27 = 512 MiB), and tokens.
SCORE_LOGITS_BUDGET = 2**27
SCORE_TOKENS_BUDGET = 8192
#: Prompt positions whose float32 log_softmax is held at once.
LOGPROB_CHUNK = 256


@dataclass(frozen=True)
class PromptLogprobs:
    """One entry per prompt token, in the completions `logprobs` shape."""

    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]

    @classmethod
    def compute(cls, logits: Any, ids: Sequence[int], top: int, tokenizer: Any) -> PromptLogprobs:
        """From `logits` [len(ids), vocab] of a forward pass over `ids` (position i predicts i+1)."""
        import torch

        ids = list(ids)
        names = tokenizer.batch_decode([[t] for t in ids])
        values: list[float | None] = [None]
        tops: list[dict[str, float] | None] = [None]
        if len(ids) > 1:
            targets = torch.tensor(ids[1:], dtype=torch.long, device=logits.device)
            chosen: list[float] = []
            alternatives: list[list[tuple[int, float]]] = []
            # A slice of positions at a time: the float32 log_softmax copy stays small whatever the
            # prompt length and vocabulary (a 4k prompt x 128k vocabulary would be 2 GiB at once).
            for start in range(0, len(ids) - 1, LOGPROB_CHUNK):
                end = min(start + LOGPROB_CHUNK, len(ids) - 1)
                logprobs = torch.log_softmax(logits[start:end].float(), dim=-1)
                chosen += logprobs.gather(1, targets[start:end, None])[:, 0].tolist()
                if top > 0:
                    best, best_ids = torch.topk(logprobs, min(top, logprobs.shape[-1]), dim=-1)
                    pairs = zip(best_ids.tolist(), best.tolist(), strict=True)
                    alternatives += [list(zip(i, v, strict=True)) for i, v in pairs]
                else:
                    alternatives += [[] for _ in range(end - start)]
            values += chosen
            unique = sorted({t for row in alternatives for t, _ in row})
            decoded: dict[int, str] = {}
            if unique:  # (batch_decode([]) answers [""] in transformers 5)
                decoded = dict(zip(unique, tokenizer.batch_decode([[t] for t in unique]), strict=True))
            for name, value, row in zip(names[1:], chosen, alternatives, strict=True):
                entry = {decoded[t]: lp for t, lp in row}
                entry[name] = value  # the prompt token itself is always there (vLLM does the same)
                tops.append(entry)
        return cls(names, values, tops, text_offsets(tokenizer, ids))


def text_offsets(tokenizer: Any, ids: Sequence[int]) -> list[int]:
    """Each token's character offset in the text the ids decode to (OpenAI's `text_offset`)."""
    decoder = IncrementalDecoder(tokenizer)
    offsets = []
    for token in ids:
        offsets.append(len(decoder.text))
        decoder.push(token)
    return offsets


def score_groups(lengths: Sequence[int], vocab: int) -> list[list[int]]:
    """Indices of the prompts, in order, grouped so that a group's padded logits fit the budget
    (a prompt over the budget alone gets a group of its own)."""
    budget = max(1, min(SCORE_TOKENS_BUDGET, SCORE_LOGITS_BUDGET // max(1, vocab)))
    return prefill_groups(lengths, token_budget=budget)


def forward_rows(model: Any, rows: Sequence[Sequence[int]], device: Any) -> Any:
    """Logits [len(rows), longest, vocab] of one right-padded forward pass without a KV cache.

    No attention mask: with the pads on the right, causal attention never lets a real token see
    one (a pad only sees what comes before it), and positions count from 0 in every row, so each
    real token's logits are those of its row alone; a padding mask would only cost time (~20 %
    on the tiny model) and the pads' logits are never read."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long, device=device)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return model(input_ids=ids, use_cache=False).logits


def score_prompts(
    model: Any,
    seqs: Sequence[RequestState],
    device: Any,
    tokenizer: Any,
    make_generator: Callable[[Any], Any],
) -> int:
    """One forward pass for `seqs` (each `scores_only`): prompt logprobs where asked, then the one
    token each may draw, or its end without one. Returns the number of tokens drawn.
    A failing forward pass fails the group; a row failing afterwards fails alone."""
    from camel_chat.serve.request_state import as_serve_error

    try:
        logits = forward_rows(model, [s.prompt_ids for s in seqs], device)
    except Exception as exc:
        for seq in seqs:
            seq.fail(as_serve_error(exc))
        return 0
    drawn = 0
    for i, seq in enumerate(seqs):
        row = logits[i, : len(seq.prompt_ids)]
        try:
            if seq.wants_prompt_logprobs:
                top = seq.params.logprobs or 0
                seq.prompt_logprobs = PromptLogprobs.compute(row, seq.prompt_ids, top, tokenizer)
            if seq.max_new_tokens == 0:
                seq.finish_without_tokens()
                continue
            seq.generator = make_generator(seq.params)
            seq.accept(choose_tokens(row[-1:].float(), [seq])[0])
            drawn += 1
        except Exception as exc:
            seq.fail(as_serve_error(exc))
    return drawn
