"""Batched prefill: the prompts of several newcomers in ONE left-padded forward pass.

    groups = prefill_groups([len(p) for p in prompts], token_budget=PREFILL_TOKEN_BUDGET)
    logits, cache, mask = prefill_together(model, [prompts[i] for i in group], pad_id, device)
    batch.add_rows(cache, mask)        # kv_batch.BatchCache: the rows join the decode batch

Prompts are left-padded to the longest of the group (the padding masked, positions counted per
row), so each row's last position holds its own next-token logits and the KV cache comes out in
the layout `BatchCache` keeps. One pass instead of one per request is what keeps the time to
first token flat when many clients arrive at once: alone, each arrival waits for every earlier
arrival's prefill (issue 16 measured TTFT p50 685 ms at 8 clients against 380 ms for
`transformers serve`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# Padded prompt tokens per prefill pass: bounds the activations of one pass (and the time the
# running decode batch waits for it) while letting a burst of ordinary prompts share one pass.
PREFILL_TOKEN_BUDGET = 8192


def prefill_groups(lengths: Sequence[int], token_budget: int = PREFILL_TOKEN_BUDGET) -> list[list[int]]:
    """Indices grouped in arrival order so that rows x longest prompt stays within the budget
    (a prompt longer than the budget gets a group of its own)."""
    groups: list[list[int]] = []
    longest = 0
    for i, length in enumerate(lengths):
        if groups and max(longest, length) * (len(groups[-1]) + 1) <= token_budget:
            groups[-1].append(i)
            longest = max(longest, length)
        else:
            groups.append([i])
            longest = length
    return groups


def prefill_together(
    model: Any, prompts: Sequence[Sequence[int]], pad_id: int, device: Any, keep_last: dict[str, int]
) -> tuple[torch.Tensor, Any, torch.Tensor]:
    """(last-position logits [rows, vocab] in float32, the DynamicCache, the mask [rows, longest])."""
    import torch
    from transformers import DynamicCache

    longest = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), longest), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, longest - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        mask[row, longest - len(prompt) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    out = model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        past_key_values=DynamicCache(),
        use_cache=True,
        **keep_last,
    )
    return out.logits[:, -1, :].float(), out.past_key_values, mask
