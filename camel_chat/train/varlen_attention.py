"""Varlen sdpa: attention over packed rows, one sample at a time, with no L×L mask.

Why it exists. A packed row (camel_chat.train.packing) holds several samples back to back, with
position ids restarting at 0 for each; attention must stay inside each sample. flash-attention
does that natively: transformers turns the position ids into cumulative sequence lengths and
calls the kernel's *varlen* entry point, which attends within each sequence and never forms a
mask. Without flash-attn (on CPU, or on a GPU without the package) the fallback was an explicit
(B, 1, L, L) block-diagonal mask for sdpa, which makes sdpa compute all L×L scores of every row
(and rules out its fused causal kernels): on the tiny model that ran at ~0.58× the throughput of
rows of plain causal attention. This module is the CPU / no-flash counterpart of flash-attention's
varlen path: it cuts each row at the sample boundaries and runs
`torch.nn.functional.scaled_dot_product_attention(..., is_causal=True)` on each sample, then
writes the outputs back in place. Work is Σ nᵢ² over the samples instead of L², no mask is built.

How it is selected. `register_varlen_sdpa()` registers the implementation under the name
`VARLEN_SDPA` ("varlen_sdpa") through transformers' official interfaces: the attention function
in `AttentionInterface`, and a mask function in `AttentionMaskInterface` that returns no mask
for unpadded, cache-free forward passes (so the model builds no dense mask) and defers to
transformers' own `sdpa_mask` otherwise. Registration happens at run time, never at import:

    from camel_chat.train.varlen_attention import VARLEN_SDPA, register_varlen_sdpa
    register_varlen_sdpa()
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation=VARLEN_SDPA)
    # or, on a loaded model: model.set_attn_implementation(VARLEN_SDPA)

`camel_chat.train.run` does this by itself when `--packing` is on and the attention would
otherwise be sdpa or eager (flash_attention_2 is kept where it is chosen), and `PackedCollator`
then passes `position_ids` only, as for flash-attention.

Where samples start: at every position id 0 (and at the start of each row), as the packing
collator lays them out; or, when the caller passes flash-style `cu_seq_lens_q`/`cu_seq_lens_k`
(cumulative lengths over the flattened batch), at those offsets. Anything this function does not
specialise — a padding mask, decoding with a KV cache (query shorter than the keys), a single
token — goes to transformers' own `sdpa_attention_forward`, so it is a drop-in for "sdpa"
outside packed training too (softcapping and position biases are refused, as they would need a
mask of their own). The saved config does not record the implementation (transformers
does not serialise it), so checkpoints load anywhere without this module.
"""

from __future__ import annotations

from typing import Any

import torch

#: The name the implementation is registered under (`attn_implementation=VARLEN_SDPA`).
VARLEN_SDPA = "varlen_sdpa"

# One-entry cache of the segments of the last position-ids tensor seen: every layer of a forward
# pass gets the same tensor, so the device-to-host read happens once per pass, not once per layer.
_last_segments: tuple[torch.Tensor, int, int, list[tuple[int, int]]] | None = None


def packing_attn_implementation(attn_implementation: str) -> str:
    """The attention `--packing` trains with: varlen sdpa in place of sdpa or eager (which would
    need the dense block mask); flash-attention (varlen already) and anything else unchanged."""
    return VARLEN_SDPA if attn_implementation in ("sdpa", "eager") else attn_implementation


def register_varlen_sdpa() -> str:
    """Register "varlen_sdpa" with transformers (idempotent) and return the name."""
    from transformers import AttentionInterface, AttentionMaskInterface

    AttentionInterface.register(VARLEN_SDPA, varlen_sdpa_attention_forward)
    AttentionMaskInterface.register(VARLEN_SDPA, varlen_sdpa_mask)
    return VARLEN_SDPA


def varlen_sdpa_mask(
    batch_size: int,
    q_length: int,
    kv_length: int,
    q_offset: Any = 0,
    kv_offset: Any = 0,
    mask_function: Any = None,
    attention_mask: torch.Tensor | None = None,
    **kwargs: Any,
) -> torch.Tensor | None:
    """The mask for "varlen_sdpa": none when the attention function can go by sample boundaries
    alone (no padding, no cached tokens: queries and keys are the same positions), otherwise
    exactly what transformers builds for sdpa (padding and decoding stay correct)."""
    from transformers.masking_utils import sdpa_mask

    fresh = q_length == kv_length and isinstance(q_offset, int) and q_offset == 0 and kv_offset == 0
    if fresh and (attention_mask is None or bool(attention_mask.all())):
        return None
    if mask_function is not None:
        kwargs["mask_function"] = mask_function
    return sdpa_mask(
        batch_size, q_length, kv_length, q_offset, kv_offset, attention_mask=attention_mask, **kwargs
    )


def sample_segments(
    batch_size: int,
    length: int,
    position_ids: torch.Tensor | None = None,
    cu_seq_lens: torch.Tensor | None = None,
) -> list[tuple[int, int]]:
    """(start, length) of every sample, as offsets into the flattened (batch_size * length)
    tokens, in order. From `cu_seq_lens` (flash-style cumulative lengths over the flattened
    batch) when given; else a sample starts wherever `position_ids` is 0 and at each row's start;
    with neither, each row is one sample. Samples never cross rows."""
    global _last_segments
    total = batch_size * length
    if cu_seq_lens is not None:
        bounds = [int(x) for x in cu_seq_lens.tolist()]
        if bounds[0] != 0 or bounds[-1] != total:
            raise ValueError(f"cu_seq_lens {bounds} do not cover the {total} tokens of the batch")
        starts = sorted(set(bounds[:-1]) | set(range(0, total, length)))
    elif position_ids is None:
        starts = list(range(0, total, length))
    else:
        cached = _last_segments
        if (
            cached is not None
            and cached[0] is position_ids
            and cached[1] == position_ids._version
            and cached[2] == batch_size
        ):
            return cached[3]
        positions = position_ids.expand(batch_size, length)
        first = (positions == 0).clone()
        first[:, 0] = True
        starts = first.reshape(-1).nonzero().flatten().tolist()
    ends = [*starts[1:], total]
    segments = [(s, e - s) for s, e in zip(starts, ends, strict=True) if e > s]
    if cu_seq_lens is None and position_ids is not None:
        _last_segments = (position_ids, position_ids._version, batch_size, segments)
    return segments


def _sliding_mask(n: int, window: int, device: torch.device) -> torch.Tensor:
    """(n, n) boolean: causal, and the key at most window - 1 positions back (transformers' rule)."""
    i = torch.arange(n, device=device)
    distance = i[:, None] - i[None, :]
    return (distance >= 0) & (distance < window)


def varlen_sdpa_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers attention function: q (B, Hq, L, D), k/v (B, Hkv, L, D) → ((B, L, Hq, D), None).

    Each sample (see `sample_segments`) attends to itself only, causally, through one sdpa call
    (with a window mask only when the layer has a sliding window shorter than the sample). Cases
    with a mask, cached keys or one query go to transformers' `sdpa_attention_forward`."""
    from transformers.integrations.sdpa_attention import (
        repeat_kv,
        sdpa_attention_forward,
        use_gqa_in_sdpa,
    )

    batch, _, length, _ = query.shape
    if attention_mask is not None or key.shape[2] != length or length == 1 or kwargs.get("cache") is not None:
        return sdpa_attention_forward(
            module,
            query,
            key,
            value,
            attention_mask,
            dropout=dropout,
            scaling=scaling,
            is_causal=is_causal,
            **kwargs,
        )
    for unsupported in ("softcap", "position_bias"):
        if kwargs.get(unsupported) is not None:
            raise ValueError(f"varlen_sdpa does not support `{unsupported}`; use eager or flex_attention")
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    sdpa_kwargs: dict[str, Any] = {}
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        if use_gqa_in_sdpa(None, key, value):
            sdpa_kwargs["enable_gqa"] = True
        else:
            key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    window = kwargs.get("sliding_window")
    segments = sample_segments(
        batch, length, kwargs.get("position_ids"), kwargs.get("cu_seq_lens_q", kwargs.get("cu_seq_lens_k"))
    )
    outputs = []
    for start, n in segments:
        row, at = divmod(start, length)
        span = slice(at, at + n)
        q, k, v = query[row : row + 1, :, span], key[row : row + 1, :, span], value[row : row + 1, :, span]
        mask = None
        if causal and window is not None and n > window:
            mask = _sliding_mask(n, window, query.device)
        out = torch.nn.functional.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=dropout,
            scale=scaling,
            is_causal=causal and mask is None and n > 1,
            **sdpa_kwargs,
        )
        outputs.append(out[0].transpose(0, 1))  # (n, Hq, D)
    attn_output = torch.cat(outputs) if len(outputs) > 1 else outputs[0].contiguous()
    return attn_output.view(batch, length, *attn_output.shape[1:]), None
