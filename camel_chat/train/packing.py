"""Batching encoded samples: padding, and packing several samples into one row without contamination.

    rows = pack(samples, max_length=2048)              # best-fit-decreasing bins of sample indices
    dataset = PackedDataset(samples, 2048)              # item: input_ids, labels, position_ids
    collator = PackedCollator(tokenizer.pad_token_id, attn_implementation="varlen_sdpa")
    # unpacked: SupervisedDataset(samples) + PaddingCollator(tokenizer.pad_token_id)

A packed row holds whole samples back to back; `position_ids` restart at 0 for each sample.
Attention must stay inside each sample:
  * `flash_attention_2` (and other flash kernels): the collator passes `position_ids` only and
    transformers runs varlen flash-attention over the sequences they delimit;
  * `varlen_sdpa` (camel_chat.train.varlen_attention; what `--packing` trains with where it
    would otherwise use sdpa or eager): likewise `position_ids` only; the attention function
    cuts the rows at the sample starts and runs causal sdpa per sample, with no L×L mask;
  * any other implementation (sdpa, eager, on CPU or GPU): the collator also passes an explicit
    4-D additive block-diagonal causal `attention_mask` of shape (B, 1, L, L) in the model
    dtype. transformers returns a 4-D mask as-is, and unlike position ids alone it isolates the
    samples even when the model's KV cache is on (transformers 5.23 then ignores the packed
    layout and lets a sample attend to the one before it, silently). Correct, but sdpa then
    computes all L×L scores of each row.
Each sample's first label is set to -100 in a packed row: unpacked, that label is never used
(nothing predicts the first token); packed, the previous sample's last token would predict it.
With that, the mean loss over trained tokens is the same packed or not (tests/train/test_packing.py).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Mapping, Sequence

import torch
from torch.utils.data import Dataset

from camel_chat.errors import CamelChatError
from camel_chat.templates import IGNORE_INDEX, Encoded
from camel_chat.train.varlen_attention import VARLEN_SDPA

Features = Sequence[Mapping[str, Sequence[int]]]


def pack(samples: Sequence[Encoded], max_length: int) -> list[list[int]]:
    """Best-fit-decreasing: place samples longest first, each into the open row it fills
    most tightly (else a new row). Returns rows of sample indices; deterministic."""
    lengths = [len(s.input_ids) for s in samples]
    for i, n in enumerate(lengths):
        if n > max_length:
            raise CamelChatError(f"sample {i} has {n} tokens, more than the packing length {max_length}")
    rows: list[list[int]] = []
    by_room: dict[int, list[int]] = {}  # room left → rows with exactly that much room
    rooms: list[int] = []  # sorted distinct keys of by_room (at most max_length of them)
    for i in sorted(range(len(samples)), key=lambda k: (-lengths[k], k)):
        k = bisect_left(rooms, lengths[i])
        if k < len(rooms):
            room = rooms[k]
            candidates = by_room[room]
            row = candidates.pop()
            if not candidates:
                del by_room[room]
                rooms.pop(k)
        else:
            room, row = max_length, len(rows)
            rows.append([])
        rows[row].append(i)
        left = room - lengths[i]
        if left > 0:
            if left not in by_room:
                by_room[left] = []
                insort(rooms, left)
            by_room[left].append(row)
    return rows


class PackedDataset(Dataset):
    """Rows of packed samples: item = {"input_ids", "labels", "position_ids"} (lists)."""

    def __init__(self, samples: Sequence[Encoded], max_length: int, rows: list[list[int]] | None = None):
        self.samples = samples
        self.max_length = max_length
        self.rows = pack(samples, max_length) if rows is None else rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        input_ids: list[int] = []
        labels: list[int] = []
        position_ids: list[int] = []
        for i in self.rows[index]:
            sample = self.samples[i]
            input_ids += sample.input_ids
            labels += [IGNORE_INDEX, *sample.labels[1:]] if sample.labels else []
            position_ids += range(len(sample.input_ids))
        return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids}

    @property
    def num_tokens(self) -> int:
        return sum(len(s.input_ids) for s in self.samples)

    @property
    def fill_ratio(self) -> float:
        """Real tokens over row capacity (rows of max_length)."""
        return self.num_tokens / (len(self.rows) * self.max_length) if self.rows else 0.0


def _target_length(longest: int, pad_to_multiple_of: int | None) -> int:
    if pad_to_multiple_of:
        return -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    return longest


def _pad(rows: Sequence[Sequence[int]], length: int, value: int) -> torch.Tensor:
    out = torch.full((len(rows), length), value, dtype=torch.long)
    for r, row in enumerate(rows):
        out[r, : len(row)] = torch.as_tensor(row, dtype=torch.long)
    return out


def _check_pad(pad_token_id: int | None) -> int:
    if pad_token_id is None:
        raise CamelChatError("the tokenizer has no pad token; set one (it must differ from EOS)")
    return pad_token_id


class PaddingCollator:
    """Right-pads a batch to its longest sample (or to `pad_to_length`, the seed's fixed
    model_max_length padding): pad id, labels -100, attention_mask 0 on padding."""

    def __init__(
        self, pad_token_id: int, pad_to_multiple_of: int | None = None, pad_to_length: int | None = None
    ) -> None:
        self.pad_token_id = _check_pad(pad_token_id)
        self.pad_to_multiple_of = pad_to_multiple_of
        self.pad_to_length = pad_to_length

    def __call__(self, features: Features) -> dict[str, torch.Tensor]:
        ids = [f["input_ids"] for f in features]
        longest = max(len(x) for x in ids)
        if self.pad_to_length is not None:
            longest = max(longest, self.pad_to_length)
        length = _target_length(longest, self.pad_to_multiple_of)
        input_ids = _pad(ids, length, self.pad_token_id)
        mask = torch.zeros_like(input_ids)
        for r, row in enumerate(ids):
            mask[r, : len(row)] = 1
        return {
            "input_ids": input_ids,
            "labels": _pad([f["labels"] for f in features], length, IGNORE_INDEX),
            "attention_mask": mask,
        }


def uses_varlen_attention(attn_implementation: str | None) -> bool:
    """True for flash-attention kernels and for varlen sdpa (camel_chat.train.varlen_attention),
    which take packed sequences from position_ids and need no mask."""
    if attn_implementation is None:
        return False
    return "flash" in attn_implementation or attn_implementation == VARLEN_SDPA


def block_causal_mask(position_ids: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B, 1, L, L) additive mask: 0 where query i may attend key j (same sample, j ≤ i),
    the dtype's minimum elsewhere. A sample starts wherever position_ids is 0."""
    sample = torch.cumsum(position_ids == 0, dim=1)
    same = sample[:, :, None] == sample[:, None, :]
    length = position_ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    allowed = (same & causal)[:, None]
    mask = torch.zeros(allowed.shape, dtype=dtype)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)


class PackedCollator:
    """Batches packed rows: input_ids, labels, position_ids, and, unless the attention is
    varlen (flash kernels or varlen_sdpa), the block-diagonal causal `attention_mask` (see the
    module docstring). Rows are right-padded to
    the longest; the padding is a sample of its own (position ids from 0) with labels -100.

    `dtype` is the mask's: the model's dtype, or float32, which sdpa (torch 2.13) and eager
    attention also accept when the model computes in bfloat16/float16."""

    def __init__(
        self,
        pad_token_id: int,
        attn_implementation: str | None = "sdpa",
        dtype: torch.dtype | str = torch.float32,
        pad_to_multiple_of: int | None = None,
    ) -> None:
        self.pad_token_id = _check_pad(pad_token_id)
        self.attn_implementation = attn_implementation
        self.dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: Features) -> dict[str, torch.Tensor]:
        ids = [f["input_ids"] for f in features]
        length = _target_length(max(len(x) for x in ids), self.pad_to_multiple_of)
        positions = [list(f["position_ids"]) + list(range(length - len(f["position_ids"]))) for f in features]
        batch = {
            "input_ids": _pad(ids, length, self.pad_token_id),
            "labels": _pad([f["labels"] for f in features], length, IGNORE_INDEX),
            "position_ids": torch.tensor(positions, dtype=torch.long),
        }
        if not uses_varlen_attention(self.attn_implementation):
            batch["attention_mask"] = block_causal_mask(batch["position_ids"], self.dtype)
        return batch
