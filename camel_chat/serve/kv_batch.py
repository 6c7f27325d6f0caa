"""One left-padded KV cache for a changing set of sequences: the state behind dynamic batching.

Row i of every layer's keys/values belongs to the i-th running sequence. All rows are aligned
on the right: a shorter sequence is padded on the left with zeros that the attention mask hides,
so one forward pass advances every sequence by one token (each with its own `position_ids`).

    batch = BatchCache()
    batch.add(single_row_cache, prompt_len)     # a prefilled newcomer joins (left-padding as needed)
    batch.add_rows(cache, mask)                 # newcomers prefilled together, left-padded
    mask, positions = batch.next_inputs()       # for the decoding forward pass
    model(input_ids, attention_mask=mask, position_ids=positions, past_key_values=batch.cache)
    batch.advance(mask)
    batch.keep([0, 2])                          # finished/cancelled rows leave; all-pad columns go

Greedy outputs are the same as for the sequence alone (a test checks it): padded positions are
masked out and positions are per row. Works for transformers' `DynamicCache` of plain
`DynamicLayer`s (what `DynamicCache()` without a config builds).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


class BatchCache:
    """The running rows' KV cache, attention mask [rows, length] and next positions [rows]."""

    def __init__(self, device: Any = None) -> None:
        self.device = device  # where masks and positions live (the model's input device)
        self.cache: Any = None  # transformers.DynamicCache
        self.mask: torch.Tensor | None = None
        self.positions: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return 0 if self.mask is None else int(self.mask.shape[0])

    @property
    def length(self) -> int:
        return 0 if self.mask is None else int(self.mask.shape[1])

    def reset(self) -> None:
        self.cache = self.mask = self.positions = None

    def add(self, cache: Any, length: int) -> None:
        """Append a one-row cache holding `length` tokens (positions 0..length-1) as the last row."""
        import torch

        device = self.device if self.device is not None else cache.layers[0].keys.device
        self.add_rows(cache, torch.ones(1, length, dtype=torch.long, device=device))

    def add_rows(self, cache: Any, mask: torch.Tensor) -> None:
        """Append the rows of a left-padded cache (a batched prefill): `mask` [rows, length] is 1
        where a row holds a token; each row's next position is its token count."""
        import torch
        import torch.nn.functional as F

        device = self.device if self.device is not None else cache.layers[0].keys.device
        mask = mask.to(device=device, dtype=torch.long)
        positions = mask.sum(dim=1)
        if self.cache is None:
            self.cache, self.mask, self.positions = cache, mask, positions
            return
        assert self.mask is not None and self.positions is not None
        length = int(mask.shape[1])
        total = max(self.length, length)
        pad_batch, pad_row = total - self.length, total - length
        for mine, theirs in zip(self.cache.layers, cache.layers, strict=True):
            # (batch, heads, seq, dim): F.pad's last pair pads seq on the left.
            mine.keys = torch.cat(
                [F.pad(mine.keys, (0, 0, pad_batch, 0)), F.pad(theirs.keys, (0, 0, pad_row, 0))]
            )
            mine.values = torch.cat(
                [F.pad(mine.values, (0, 0, pad_batch, 0)), F.pad(theirs.values, (0, 0, pad_row, 0))]
            )
        self.mask = torch.cat([F.pad(self.mask, (pad_batch, 0)), F.pad(mask, (pad_row, 0))])
        self.positions = torch.cat([self.positions, positions])

    def next_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(attention mask including the new token, position ids [rows, 1]) for one decoding step."""
        import torch

        assert self.mask is not None and self.positions is not None
        ones = torch.ones(self.size, 1, dtype=self.mask.dtype, device=self.mask.device)
        return torch.cat([self.mask, ones], dim=1), self.positions[:, None]

    def advance(self, mask: torch.Tensor) -> None:
        """After the forward pass: the cache grew by one column (the model appended it)."""
        assert self.positions is not None
        self.mask = mask
        self.positions = self.positions + 1

    def keep(self, rows: list[int]) -> None:
        """Keep only these rows (in this order); drop the leading columns that are padding for all."""
        import torch

        if not rows:
            self.reset()
            return
        if rows == list(range(self.size)):
            return
        assert self.mask is not None and self.positions is not None
        index = torch.tensor(rows, dtype=torch.long, device=self.mask.device)
        mask = self.mask.index_select(0, index)
        start = int(mask.any(dim=0).long().argmax().item())  # first column some row still uses
        for layer in self.cache.layers:  # layers may sit on different GPUs (device_map)
            here = index.to(layer.keys.device)
            layer.keys = layer.keys.index_select(0, here)[:, :, start:]
            layer.values = layer.values.index_select(0, here)[:, :, start:]
        self.mask = mask[:, start:]
        self.positions = self.positions.index_select(0, index)
