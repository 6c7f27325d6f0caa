"""Packing: bins fit, position ids restart, no attention across samples, and the same loss
(and gradients) packed or not on the tiny models; the padding collator."""

from __future__ import annotations

import random
from typing import Any

import pytest
import torch

from camel_chat.errors import CamelChatError
from camel_chat.templates import IGNORE_INDEX, Encoded
from camel_chat.train.dataset import SupervisedDataset
from camel_chat.train.packing import (
    PackedCollator,
    PackedDataset,
    PaddingCollator,
    block_causal_mask,
    pack,
    uses_varlen_attention,
)

MAX_LENGTH = 256
PAD = 3  # the tiny tokenizer's <pad>


def fake(lengths: list[int]) -> list[Encoded]:
    return [Encoded(list(range(10, 10 + n)), [IGNORE_INDEX, *range(11, 10 + n)]) for n in lengths]


# --- bins ----------------------------------------------------------------------------------


def test_pack_fits_every_sample_once_and_is_deterministic() -> None:
    rng = random.Random(1)
    lengths = [rng.randint(1, 300) for _ in range(500)]
    rows = pack(fake(lengths), 300)
    assert sorted(i for row in rows for i in row) == list(range(500))
    assert all(sum(lengths[i] for i in row) <= 300 for row in rows)
    assert pack(fake(lengths), 300) == rows
    # best-fit-decreasing fills the rows well even with lengths spread evenly up to the row size
    assert sum(lengths) / (len(rows) * 300) > 0.97


def test_pack_best_fit_decreasing_on_small_cases() -> None:
    assert pack(fake([6, 4, 5, 5, 3, 7]), 10) == [[5, 4], [0, 1], [2, 3]]
    assert pack(fake([10, 10]), 10) == [[0], [1]]
    assert pack([], 10) == []
    with pytest.raises(CamelChatError, match="sample 1 has 11 tokens, more than the packing length 10"):
        pack(fake([3, 11]), 10)


def test_packed_rows_restart_positions_and_never_train_across_samples() -> None:
    samples = fake([4, 3, 5])
    dataset = PackedDataset(samples, 12)
    assert len(dataset) == 1 and dataset.rows == [[2, 0, 1]]
    row = dataset[0]
    assert row["position_ids"] == [0, 1, 2, 3, 4, 0, 1, 2, 3, 0, 1, 2]
    assert row["input_ids"] == samples[2].input_ids + samples[0].input_ids + samples[1].input_ids
    # every sample's first label is ignored: in a row it would be predicted from the previous sample
    assert [row["labels"][i] for i in (0, 5, 9)] == [IGNORE_INDEX] * 3
    assert row["labels"][6:9] == samples[0].labels[1:]
    assert dataset.num_tokens == 12 and dataset.fill_ratio == 1.0


# --- collators -----------------------------------------------------------------------------


def test_padding_collator_pads_right() -> None:
    features = list(SupervisedDataset(fake([3, 5])))
    batch = PaddingCollator(PAD)(features)
    assert batch["input_ids"].tolist() == [[10, 11, 12, PAD, PAD], [10, 11, 12, 13, 14]]
    assert batch["labels"].tolist() == [[-100, 11, 12, -100, -100], [-100, 11, 12, 13, 14]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1] * 5]
    assert PaddingCollator(PAD, pad_to_multiple_of=4)(features)["input_ids"].shape == (2, 8)
    assert PaddingCollator(PAD, pad_to_length=16)(features)["labels"].shape == (2, 16)
    with pytest.raises(CamelChatError, match="no pad token"):
        PaddingCollator(None)  # type: ignore[arg-type]


def test_packed_collator_builds_a_block_diagonal_causal_mask() -> None:
    dataset = PackedDataset(fake([2, 3, 4]), 5)  # rows: [4], [3, 2]
    features = [dataset[0], dataset[1]]
    batch = PackedCollator(PAD, "sdpa", dtype=torch.bfloat16)(features)
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 0], [0, 1, 2, 0, 1]]
    assert batch["labels"][0, 4].item() == IGNORE_INDEX and batch["input_ids"][0, 4].item() == PAD
    mask = batch["attention_mask"]
    assert mask.shape == (2, 1, 5, 5) and mask.dtype == torch.bfloat16
    allowed = (mask == 0).int()[:, 0].tolist()
    assert allowed[1] == [
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0],
        [0, 0, 0, 1, 0],
        [0, 0, 0, 1, 1],
    ]
    assert allowed[0][4] == [0, 0, 0, 0, 1]  # padding attends only to itself: no NaN rows
    assert (mask[mask != 0] == torch.finfo(torch.bfloat16).min).all()
    flash = PackedCollator(PAD, "flash_attention_2", pad_to_multiple_of=8)(features)
    assert "attention_mask" not in flash and flash["position_ids"].shape == (2, 8)
    assert uses_varlen_attention("flash_attention_2") and not uses_varlen_attention("sdpa")


# --- equivalence on the tiny models ----------------------------------------------------------


def unpacked_and_packed(samples: list[Encoded], attn: str) -> tuple[dict, dict, PackedDataset]:
    unpacked = PaddingCollator(PAD)(list(SupervisedDataset(samples)))
    dataset = PackedDataset(samples, MAX_LENGTH)
    packed = PackedCollator(PAD, attn)([dataset[i] for i in range(len(dataset))])
    return unpacked, packed, dataset


@pytest.mark.parametrize(("arch", "attn"), [("llama", "sdpa"), ("llama", "eager"), ("qwen2", "sdpa")])
def test_packed_loss_and_gradients_equal_unpacked(
    arch: str, attn: str, samples: list[Encoded], models: dict[str, Any]
) -> None:
    model = models[arch]
    model.config.use_cache = False
    model.set_attn_implementation(attn)
    unpacked, packed, dataset = unpacked_and_packed(samples, attn)
    assert len(dataset) < len(samples) and packed["input_ids"].shape[1] <= MAX_LENGTH
    losses, grads = [], []
    for batch in (unpacked, packed):
        model.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        losses.append(loss.item())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    model.zero_grad()
    # the mean over trained tokens, over the same tokens
    trained = sum(s.num_trainable for s in samples)
    assert int((packed["labels"] != IGNORE_INDEX).sum()) == trained
    assert abs(losses[0] - losses[1]) < 1e-4, losses
    assert torch.allclose(grads[0], grads[1], rtol=1e-3, atol=1e-6)


def sample_logits(model: Any, batch: dict, dataset: PackedDataset, samples: list[Encoded]) -> dict[int, Any]:
    """Each sample's logits, cut out of the packed rows."""
    with torch.no_grad():
        logits = model(**batch).logits
    out = {}
    for r, row in enumerate(dataset.rows):
        start = 0
        for i in row:
            n = len(samples[i].input_ids)
            out[i] = logits[r, start : start + n]
            start += n
    return out


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("use_cache", [False, True])
def test_each_packed_sample_sees_only_itself(
    attn: str, use_cache: bool, samples: list[Encoded], models: dict[str, Any]
) -> None:
    # The explicit block mask isolates samples even with the model's cache on, where position
    # ids alone do not (transformers 5.23 then ignores the packed layout).
    model = models["llama"]
    model.config.use_cache = use_cache
    model.set_attn_implementation(attn)
    unpacked, packed, dataset = unpacked_and_packed(samples, attn)
    with torch.no_grad():
        alone = model(**unpacked).logits
    together = sample_logits(model, packed, dataset, samples)
    for i, sample in enumerate(samples):
        n = len(sample.input_ids)
        assert torch.allclose(together[i], alone[i, :n], atol=1e-5), i
    model.config.use_cache = False


def test_changing_one_sample_leaves_the_next_one_unchanged(
    samples: list[Encoded], models: dict[str, Any]
) -> None:
    model = models["llama"]
    model.config.use_cache = False
    model.set_attn_implementation("sdpa")
    dataset = PackedDataset(samples, MAX_LENGTH)
    row = next(r for r in dataset.rows if len(r) >= 2)
    first, second = row[0], row[1]
    changed = list(samples)
    ids = [(t * 7 + 3) % 900 + 10 for t in samples[first].input_ids]
    changed[first] = Encoded(ids, samples[first].labels)
    sub = PackedDataset(samples, MAX_LENGTH, rows=[row])
    sub_changed = PackedDataset(changed, MAX_LENGTH, rows=[row])
    collate = PackedCollator(PAD, "sdpa")
    before = sample_logits(model, collate([sub[0]]), sub, samples)
    after = sample_logits(model, collate([sub_changed[0]]), sub_changed, changed)
    assert not torch.allclose(before[first], after[first])
    assert torch.allclose(before[second], after[second], atol=1e-6)
    # control: without the block mask (plain causal attention) the change leaks into the next sample
    plain = {"input_ids": collate([sub[0]])["input_ids"]}
    plain_changed = {"input_ids": collate([sub_changed[0]])["input_ids"]}
    leaked = sample_logits(model, plain, sub, samples)[second]
    leaked_changed = sample_logits(model, plain_changed, sub_changed, changed)[second]
    assert not torch.allclose(leaked, leaked_changed, atol=1e-3)


def test_position_ids_alone_isolate_samples_without_the_cache(
    samples: list[Encoded], models: dict[str, Any]
) -> None:
    # What the flash-attention path hands the model (no mask); on CPU sdpa honours it too
    # when the cache is off.
    model = models["llama"]
    model.config.use_cache = False
    model.set_attn_implementation("sdpa")
    unpacked, _, dataset = unpacked_and_packed(samples, "sdpa")
    varlen = PackedCollator(PAD, "flash_attention_2")([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        assert abs(model(**unpacked).loss.item() - model(**varlen).loss.item()) < 1e-4


def test_block_causal_mask_matches_position_segments() -> None:
    positions = torch.tensor([[0, 1, 0, 1, 2, 0]])
    allowed = (block_causal_mask(positions) == 0)[0, 0]
    for i in range(6):
        for j in range(6):
            segment = [0, 0, 1, 1, 1, 2]
            assert allowed[i, j].item() == (segment[i] == segment[j] and j <= i)
