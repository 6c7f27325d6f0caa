"""Varlen sdpa (camel_chat.train.varlen_attention): packed rows give the unpacked loss, logits
and gradients on the tiny LLaMA and Qwen2 with position ids only (no mask is built), samples
stay isolated, the cases it does not specialise behave as sdpa, and `--packing` trains with it."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from sample_conversations import random_conversation

from camel_chat.conversation import to_sharegpt
from camel_chat.templates import IGNORE_INDEX, Encoded
from camel_chat.train.dataset import SupervisedDataset
from camel_chat.train.packing import PackedCollator, PackedDataset, PaddingCollator, uses_varlen_attention
from camel_chat.train.varlen_attention import VARLEN_SDPA, register_varlen_sdpa, sample_segments

REPO = Path(__file__).resolve().parents[2]
MAX_LENGTH = 256
PAD = 3  # the tiny tokenizer's <pad>


@pytest.fixture(scope="module", autouse=True)
def _registered() -> None:
    register_varlen_sdpa()


def batches(samples: list[Encoded]) -> tuple[dict, dict, PackedDataset]:
    """The samples one per row (padded, for sdpa) and packed (for varlen sdpa)."""
    unpacked = PaddingCollator(PAD)(list(SupervisedDataset(samples)))
    dataset = PackedDataset(samples, MAX_LENGTH)
    packed = PackedCollator(PAD, VARLEN_SDPA)([dataset[i] for i in range(len(dataset))])
    return unpacked, packed, dataset


def per_sample(logits: torch.Tensor, dataset: PackedDataset, samples: list[Encoded]) -> dict[int, Any]:
    """Each sample's logits, cut out of the packed rows."""
    out = {}
    for r, row in enumerate(dataset.rows):
        start = 0
        for i in row:
            n = len(samples[i].input_ids)
            out[i] = logits[r, start : start + n]
            start += n
    return out


def forward(model: Any, attn: str, batch: dict, use_cache: bool = False) -> Any:
    model.config.use_cache = use_cache
    model.set_attn_implementation(attn)
    try:
        return model(**batch)
    finally:
        model.config.use_cache = False


# --- the segments ----------------------------------------------------------------------------


def test_sample_segments_from_position_ids_and_cu_seq_lens() -> None:
    positions = torch.tensor([[0, 1, 0, 1, 2, 0], [0, 1, 2, 3, 0, 1]])
    assert sample_segments(2, 6, positions) == [(0, 2), (2, 3), (5, 1), (6, 4), (10, 2)]
    assert sample_segments(2, 6, positions) == [(0, 2), (2, 3), (5, 1), (6, 4), (10, 2)]  # cached
    # a row always starts a sample, even where its positions do not restart at 0
    assert sample_segments(1, 4, torch.tensor([[5, 6, 0, 1]])) == [(0, 2), (2, 2)]
    assert sample_segments(2, 3) == [(0, 3), (3, 3)]  # no positions: one sample per row
    cu = torch.tensor([0, 3, 4, 9], dtype=torch.int32)
    assert sample_segments(1, 9, cu_seq_lens=cu) == [(0, 3), (3, 1), (4, 5)]
    with pytest.raises(ValueError, match="do not cover"):
        sample_segments(1, 10, cu_seq_lens=cu)


def test_the_collator_passes_position_ids_only() -> None:
    assert uses_varlen_attention(VARLEN_SDPA) and not uses_varlen_attention("sdpa")
    dataset = PackedDataset([Encoded([10, 11, 12], [IGNORE_INDEX, 11, 12]), Encoded([13, 14], [-100, 14])], 8)
    batch = PackedCollator(PAD, VARLEN_SDPA)([dataset[0]])
    assert set(batch) == {"input_ids", "labels", "position_ids"}
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]


def test_no_dense_mask_is_built_for_packed_rows(models: dict[str, Any]) -> None:
    from transformers.masking_utils import create_causal_mask

    config = models["llama"].config
    config._attn_implementation = VARLEN_SDPA
    embeds = torch.zeros(2, 6, config.hidden_size)
    positions = torch.tensor([[0, 1, 2, 0, 1, 2], [0, 1, 0, 1, 2, 3]])
    assert create_causal_mask(config, embeds, None, None, position_ids=positions) is None
    assert (
        create_causal_mask(config, embeds, torch.ones(2, 6, dtype=torch.long), None, position_ids=positions)
        is None
    )
    # padding (not what packing sends): transformers' own sdpa mask, which the function then uses
    padded = torch.tensor([[1, 1, 1, 1, 0, 0], [1] * 6])
    mask = create_causal_mask(config, embeds, padded, None, position_ids=positions)
    assert mask is not None and mask.shape == (2, 1, 6, 6)
    config._attn_implementation = "sdpa"


# --- equivalence -------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_packed_loss_logits_and_gradients_equal_unpacked(
    arch: str, samples: list[Encoded], models: dict[str, Any]
) -> None:
    model = models[arch]
    unpacked, packed, dataset = batches(samples)
    assert "attention_mask" not in packed and len(dataset) < len(samples)
    losses, grads, logits = [], [], []
    for attn, batch in (("sdpa", unpacked), (VARLEN_SDPA, packed)):
        model.zero_grad()
        out = forward(model, attn, batch)
        out.loss.backward()
        losses.append(out.loss.item())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
        logits.append(out.logits.detach())
    model.zero_grad()
    model.set_attn_implementation("sdpa")
    assert int((packed["labels"] != IGNORE_INDEX).sum()) == sum(s.num_trainable for s in samples)
    assert abs(losses[0] - losses[1]) < 1e-4, losses
    together = per_sample(logits[1], dataset, samples)
    for i, sample in enumerate(samples):
        n = len(sample.input_ids)
        assert torch.allclose(together[i], logits[0][i, :n], atol=1e-5), i
    assert torch.allclose(grads[0], grads[1], rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("use_cache", [False, True])
def test_each_packed_sample_sees_only_itself(
    use_cache: bool, samples: list[Encoded], models: dict[str, Any]
) -> None:
    # Unlike position ids alone with sdpa, varlen sdpa isolates the samples with the cache on too.
    model = models["llama"]
    unpacked, packed, dataset = batches(samples)
    with torch.no_grad():
        alone = forward(model, "sdpa", unpacked).logits
        together = per_sample(forward(model, VARLEN_SDPA, packed, use_cache).logits, dataset, samples)
    model.set_attn_implementation("sdpa")
    for i, sample in enumerate(samples):
        n = len(sample.input_ids)
        assert torch.allclose(together[i], alone[i, :n], atol=1e-5), i


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_changing_one_sample_leaves_the_next_one_unchanged(
    arch: str, samples: list[Encoded], models: dict[str, Any]
) -> None:
    model = models[arch]
    dataset = PackedDataset(samples, MAX_LENGTH)
    row = next(r for r in dataset.rows if len(r) >= 2)
    first, second = row[0], row[1]
    changed = list(samples)
    changed[first] = Encoded(
        [(t * 7 + 3) % 900 + 10 for t in samples[first].input_ids], samples[first].labels
    )
    sub = PackedDataset(samples, MAX_LENGTH, rows=[row])
    sub_changed = PackedDataset(changed, MAX_LENGTH, rows=[row])
    collate = PackedCollator(PAD, VARLEN_SDPA)
    with torch.no_grad():
        before = per_sample(forward(model, VARLEN_SDPA, collate([sub[0]])).logits, sub, samples)
        after = per_sample(
            forward(model, VARLEN_SDPA, collate([sub_changed[0]])).logits, sub_changed, changed
        )
    model.set_attn_implementation("sdpa")
    assert not torch.allclose(before[first], after[first], atol=1e-3)
    assert torch.allclose(before[second], after[second], atol=1e-6)


class _Attention(torch.nn.Module):
    num_key_value_groups = 2
    is_causal = True


def test_the_function_matches_sdpa_with_a_block_mask() -> None:
    from camel_chat.train.packing import block_causal_mask
    from camel_chat.train.varlen_attention import varlen_sdpa_attention_forward

    generator = torch.Generator().manual_seed(0)
    query = torch.randn(2, 4, 12, 8, generator=generator)
    key, value = (torch.randn(2, 2, 12, 8, generator=generator) for _ in range(2))
    positions = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0]])
    mask = block_causal_mask(positions)
    expected = torch.nn.functional.scaled_dot_product_attention(
        query, key.repeat_interleave(2, 1), value.repeat_interleave(2, 1), attn_mask=mask, scale=0.3
    ).transpose(1, 2)
    out, weights = varlen_sdpa_attention_forward(
        _Attention(), query, key, value, None, scaling=0.3, position_ids=positions
    )
    assert weights is None and out.shape == (2, 12, 4, 8) and out.is_contiguous()
    assert torch.allclose(out, expected, atol=1e-6)
    # the same samples from flash-style cumulative lengths over the flattened batch
    cu = torch.tensor([0, 5, 8, 12, 21, 23, 24], dtype=torch.int32)
    by_cu, _ = varlen_sdpa_attention_forward(
        _Attention(), query, key, value, None, scaling=0.3, cu_seq_lens_q=cu
    )
    assert torch.allclose(by_cu, expected, atol=1e-6)


def test_cu_seq_lens_reach_the_attention(samples: list[Encoded], models: dict[str, Any]) -> None:
    # A flattened row with flash-style kwargs (as transformers' DataCollatorWithFlattening makes them),
    # here with position ids that do not restart: the samples come from cu_seq_lens alone.
    from camel_chat.train.packing import block_causal_mask

    model = models["qwen2"]
    dataset = PackedDataset(samples, MAX_LENGTH)
    row = next(r for r in range(len(dataset)) if len(dataset.rows[r]) >= 2)
    ids = PackedCollator(PAD, VARLEN_SDPA)([dataset[row]])["input_ids"]
    lengths = [len(samples[i].input_ids) for i in dataset.rows[row]]
    assert sum(lengths) == ids.shape[1]
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    flash = {
        "cu_seq_lens_q": cu,
        "cu_seq_lens_k": cu,
        "max_length_q": max(lengths),
        "max_length_k": max(lengths),
    }
    positions = torch.arange(ids.shape[1])[None]
    segments = torch.cat([torch.arange(n) for n in lengths])[None]
    with torch.no_grad():
        by_cu = forward(model, VARLEN_SDPA, {"input_ids": ids, "position_ids": positions, **flash}).logits
        mask = block_causal_mask(segments)
        expected = forward(
            model, "sdpa", {"input_ids": ids, "position_ids": positions, "attention_mask": mask}
        )
    model.set_attn_implementation("sdpa")
    assert torch.allclose(by_cu, expected.logits, atol=1e-5)


def test_sliding_window_layers_keep_their_window(tiny_tokenizer: Any, samples: list[Encoded]) -> None:
    from transformers import Qwen2ForCausalLM

    from camel_chat.model.tiny import build_tiny_model

    config = build_tiny_model("qwen2", tiny_tokenizer).config
    config.use_sliding_window, config.sliding_window, config.max_window_layers = True, 16, 1
    config.layer_types = ["full_attention", "sliding_attention"]
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).eval()
    unpacked, packed, dataset = batches(samples)
    with torch.no_grad():
        alone = forward(model, "sdpa", unpacked).logits
        together = per_sample(forward(model, VARLEN_SDPA, packed).logits, dataset, samples)
    for i, sample in enumerate(samples):
        n = len(sample.input_ids)
        assert torch.allclose(together[i], alone[i, :n], atol=1e-5), i
    config.layer_types = ["full_attention", "full_attention"]
    full = Qwen2ForCausalLM(config).eval()
    full.load_state_dict(model.state_dict())
    with torch.no_grad():
        no_window = per_sample(forward(full, VARLEN_SDPA, packed).logits, dataset, samples)
    longest = max(range(len(samples)), key=lambda i: len(samples[i].input_ids))
    assert not torch.allclose(no_window[longest], together[longest], atol=1e-4)  # the window mattered


def test_padding_and_generation_behave_as_sdpa(samples: list[Encoded], models: dict[str, Any]) -> None:
    model = models["llama"]
    unpacked = PaddingCollator(PAD)(list(SupervisedDataset(samples[:4])))
    with torch.no_grad():
        reference = forward(model, "sdpa", unpacked).logits
        varlen = forward(model, VARLEN_SDPA, unpacked).logits
    mask = unpacked["attention_mask"].bool()
    assert torch.allclose(reference[mask], varlen[mask], atol=1e-5)
    prompt = torch.tensor([samples[0].input_ids[:20]])
    outputs = []
    for attn in ("sdpa", VARLEN_SDPA):
        model.set_attn_implementation(attn)
        outputs.append(model.generate(prompt, max_new_tokens=8, do_sample=False, use_cache=True))
    model.set_attn_implementation("sdpa")
    assert torch.equal(outputs[0], outputs[1])


# --- selection and training --------------------------------------------------------------------


def test_importing_registers_nothing() -> None:
    code = (
        "import camel_chat.train.run, camel_chat.train.packing, camel_chat.train.varlen_attention\n"
        "from transformers import AttentionInterface, AttentionMaskInterface\n"
        "assert 'varlen_sdpa' not in AttentionInterface._global_mapping\n"
        "assert 'varlen_sdpa' not in AttentionMaskInterface._global_mapping\n"
        "camel_chat.train.varlen_attention.register_varlen_sdpa()\n"
        "assert 'varlen_sdpa' in AttentionInterface._global_mapping\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ((), "sdpa"),
        (("--packing", "True"), VARLEN_SDPA),
        (("--packing", "True", "--attn_implementation", "sdpa"), VARLEN_SDPA),
        (("--packing", "True", "--attn_implementation", "eager"), VARLEN_SDPA),
        (
            ("--packing", "True", "--attn_implementation", "flash_attention_2", "--bf16", "True"),
            "flash_attention_2",
        ),
        (("--attn_implementation", "eager"), "eager"),
    ],
)
def test_packing_selects_varlen_sdpa(extra: tuple[str, ...], expected: str) -> None:
    from camel_chat.train.args import parse_args
    from camel_chat.train.run import _attn

    argv = ["--model_name_or_path", "m", "--data_path", "d.json", "--output_dir", "o", "--use_cpu", "True"]
    assert _attn(parse_args([*argv, *extra], qlora=False)) == expected


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = random.Random(5)
    records = [to_sharegpt(random_conversation(rng)) for _ in range(30)]
    path = tmp_path_factory.mktemp("varlen-data") / "data.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


def test_training_with_packing_uses_varlen_sdpa(
    tiny_llama_dir: Path, data_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from transformers import AutoModelForCausalLM

    from camel_chat.train.args import parse_args
    from camel_chat.train.run import run

    out = tmp_path / "out"
    argv = [
        *(
            "--model_name_or_path",
            str(tiny_llama_dir),
            "--data_path",
            str(data_file),
            "--output_dir",
            str(out),
        ),
        *("--max_steps", "3", "--per_device_train_batch_size", "2", "--learning_rate", "1e-3"),
        *("--model_max_length", "128", "--use_cpu", "True", "--report_to", "none", "--logging_steps", "1"),
        *("--save_strategy", "no", "--disable_tqdm", "True", "--dataloader_num_workers", "0"),
        *("--packing", "True", "--eval_ratio", "0.1", "--eval_strategy", "steps", "--eval_steps", "3"),
    ]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run(parse_args(argv, qlora=False))
    finally:
        torch.set_num_threads(threads)
    assert f"--packing: attention {VARLEN_SDPA}" in capsys.readouterr().out
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    losses = [e["loss"] for e in history if "loss" in e]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    assert any(math.isfinite(e.get("eval_loss", math.nan)) for e in history)
    # the checkpoint does not name the implementation, so it loads where it is not registered
    assert VARLEN_SDPA not in (out / "config.json").read_text()
    assert AutoModelForCausalLM.from_pretrained(out).config._attn_implementation != VARLEN_SDPA
