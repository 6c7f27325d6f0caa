"""camel_chat.model.apply_lora: LoRA and QLoRA merges equal base + adapter; safe target handling.

Adapters are made here with peft directly: LoRA on every linear layer except lm_head with
random B matrices (peft initialises B to zero, which would make any merge look right).
The QLoRA adapter sits on the tiny model quantised to 4-bit nf4 with double quantisation
on CPU, and is saved with camel_chat.json recording that, as training does.

Tolerances (measured on the tiny model over 5 seeds, |logits| ≈ 0.7):
- LoRA merge vs PeftModel(base + adapter), float32: ≤ 7e-7 (W + BA rounded once) → 1e-5.
- --dtype bfloat16 vs that float32 reference: ≤ 9e-3 (bf16 keeps 8 significant bits,
  ~2^-9 relative per rounding, over two layers) → 3e-2.
- QLoRA merge vs the 4-bit PeftModel on bitsandbytes' dequantise-then-matmul path (the one
  training takes: train mode, or inputs requiring grad): ≤ 6e-7 → 1e-5. The merged dense
  weights are exactly the training-time dequantised weights plus BA.
- In eval mode without grad, on CPUs with AVX512-BF16, bitsandbytes 0.50 repacks the 4-bit
  weights for a bf16 kernel instead: that path is itself 3e-3..7e-3 away from the exact
  one. The merged model is exactly as far from it (within 1e-5), and both stay < 2e-2.
- --no-dequant merges onto the original float32 weights: 0.07..0.11 from the QLoRA logits
  (the 4-bit quantisation error the adapter was trained against) → asserted > 1e-2.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from camel_chat.conversation import Conversation
from camel_chat.model.apply_lora import main
from camel_chat.model.checkpoint import METADATA_FILE, read_metadata, save_pretrained_with_template
from camel_chat.templates import SpecialTokens, get_template, render_text

EXACT = 1e-5
BF16_KERNEL = 2e-2


def _randomise_lora_b(peft_model, seed: int) -> None:
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)


def _lora_config():
    from peft import LoraConfig

    # "all-linear" is peft's spelling of every Linear except the output layer (lm_head).
    return LoraConfig(
        r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
    )


@pytest.fixture(scope="module")
def ids():
    import torch

    return torch.randint(7, 1000, (2, 24), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def lora_dir(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter on the float32 tiny LLaMA, saved as training saves it (vicuna_v1.1)."""
    from peft import get_peft_model

    from camel_chat.model.loader import load_model, load_tokenizer

    model = get_peft_model(load_model(tiny_llama_dir, for_training=True), _lora_config())
    assert {n.split(".")[-1] for n in model.peft_config["default"].target_modules} == {
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"
    }  # fmt: skip
    _randomise_lora_b(model, seed=1)
    out = tmp_path_factory.mktemp("adapters") / "lora"
    save_pretrained_with_template(model, load_tokenizer(tiny_llama_dir), "vicuna_v1.1", out)
    return out


@pytest.fixture(scope="module")
def qlora_dir(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A QLoRA adapter: LoRA on the tiny LLaMA quantised to 4-bit nf4 (double quant) on CPU."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    from camel_chat.model.loader import load_model, load_tokenizer

    base = load_model(tiny_llama_dir, bits=4, dtype="float32", for_training=True)
    base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)
    model = get_peft_model(base, _lora_config())
    _randomise_lora_b(model, seed=2)
    out = tmp_path_factory.mktemp("adapters") / "qlora"
    save_pretrained_with_template(model, load_tokenizer(tiny_llama_dir), "vicuna_v1.1", out)
    assert read_metadata(out)["quantization"]["bits"] == 4
    return out


def _merge(base: Path, lora: Path, target: Path, *extra: str) -> int:
    argv = ["--base-model-path", str(base), "--lora-path", str(lora), "--target-model-path", str(target)]
    return main([*argv, *extra])


def _logits(model, ids):
    import torch

    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def _load(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path).eval()


def _max_diff(a, b) -> float:
    return (a - b).abs().max().item()


# --- LoRA ----------------------------------------------------------------------------------


def test_lora_merge_equals_base_plus_adapter(
    tiny_llama_dir: Path, lora_dir: Path, tmp_path: Path, ids
) -> None:
    import torch
    from safetensors import safe_open

    from camel_chat.model.loader import load_model

    target = tmp_path / "merged"
    assert _merge(tiny_llama_dir, lora_dir, target) == 0
    merged = _load(target)
    assert type(merged).__name__ == "LlamaForCausalLM"
    assert merged.dtype is torch.float32  # default: the base's dtype
    with safe_open(target / "model.safetensors", "pt") as handle:
        assert not [k for k in handle.keys() if "lora" in k]  # noqa: SIM118

    reference = load_model(tiny_llama_dir, adapter_path=lora_dir)
    expected = _logits(reference, ids)
    assert _max_diff(_logits(merged, ids), expected) < EXACT
    assert _max_diff(_logits(load_model(tiny_llama_dir), ids), expected) > 1e-2  # the adapter matters


def test_merged_checkpoint_carries_the_template(tiny_llama_dir: Path, lora_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer, GenerationConfig

    target = tmp_path / "merged"
    assert _merge(tiny_llama_dir, lora_dir, target) == 0
    metadata = read_metadata(target)
    assert metadata["template"] == "vicuna_v1.1"
    assert metadata["adapter"] is False
    assert metadata["merged_from"]["adapter"] == str(lora_dir)
    assert metadata["merged_from"]["dequantized"] is None

    tok = AutoTokenizer.from_pretrained(target)
    conversation = Conversation.of(("user", "Hi camel"), ("assistant", "Hello!"), ("user", "Why humps?"))
    messages = [{"role": m.role, "content": m.content} for m in conversation.messages]
    rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    template = get_template("vicuna_v1.1")
    assert rendered == render_text(
        template, conversation, add_generation_prompt=True, special=SpecialTokens.of(tok)
    )
    assert GenerationConfig.from_pretrained(target).eos_token_id == [tok.eos_token_id]
    assert tok.pad_token_id != tok.eos_token_id


def test_merge_in_bfloat16(tiny_llama_dir: Path, lora_dir: Path, tmp_path: Path, ids) -> None:
    import torch

    from camel_chat.model.loader import load_model

    target = tmp_path / "bf16"
    assert _merge(tiny_llama_dir, lora_dir, target, "--dtype", "bfloat16") == 0
    assert json.loads((target / "config.json").read_text())["dtype"] == "bfloat16"
    merged = _load(target)
    assert {p.dtype for p in merged.parameters()} == {torch.bfloat16}
    expected = _logits(load_model(tiny_llama_dir, adapter_path=lora_dir), ids)
    # bf16 weights and activations: ~2^-9 relative error per rounding, measured ≤ 9e-3.
    assert _max_diff(_logits(merged, ids), expected) < 3e-2


# --- QLoRA ---------------------------------------------------------------------------------


def test_qlora_merge_dequantizes_the_4bit_base(
    tiny_llama_dir: Path, qlora_dir: Path, tmp_path: Path, ids
) -> None:
    import torch

    from camel_chat.model.loader import load_model

    target = tmp_path / "merged"
    assert _merge(tiny_llama_dir, qlora_dir, target) == 0
    config = json.loads((target / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["dtype"] == "float32"
    merged = _load(target)
    assert all(
        type(m).__module__.startswith("torch") for m in merged.modules() if "Linear" in type(m).__name__
    )
    assert {p.dtype for p in merged.parameters()} == {torch.float32}
    assert read_metadata(target)["merged_from"]["dequantized"]["quant_type"] == "nf4"
    got = _logits(merged, ids)

    qlora = load_model(tiny_llama_dir, bits=4, dtype="float32", adapter_path=qlora_dir)
    qlora.train()  # bitsandbytes' exact dequantise-then-matmul path, as in training
    exact = _logits(qlora, ids)
    assert _max_diff(got, exact) < EXACT

    qlora.eval()  # may take bitsandbytes' bf16 CPU kernel (see the module docstring)
    kernel = _logits(qlora, ids)
    kernel_error = _max_diff(kernel, exact)
    assert kernel_error < BF16_KERNEL
    assert _max_diff(got, kernel) <= kernel_error + EXACT

    plain = tmp_path / "no-dequant"
    assert _merge(tiny_llama_dir, qlora_dir, plain, "--no-dequant") == 0
    onto_16bit = _logits(_load(plain), ids)
    assert _max_diff(onto_16bit, exact) > 1e-2  # 1000x EXACT: dequantising is what makes it equal
    fp32_reference = _logits(load_model(tiny_llama_dir, adapter_path=qlora_dir), ids)
    assert _max_diff(onto_16bit, fp32_reference) < EXACT


def test_bits_flag_for_adapters_without_metadata(
    tiny_llama_dir: Path, qlora_dir: Path, tmp_path: Path, ids
) -> None:
    bare = tmp_path / "bare-adapter"
    shutil.copytree(qlora_dir, bare)
    (bare / METADATA_FILE).unlink()
    with_flag, without = tmp_path / "with-bits", tmp_path / "without-bits"
    assert _merge(tiny_llama_dir, bare, with_flag, "--bits", "4") == 0
    assert _merge(tiny_llama_dir, bare, without) == 0
    reference = _logits(_load(_merged_with_metadata(tiny_llama_dir, qlora_dir, tmp_path)), ids)
    assert _max_diff(_logits(_load(with_flag), ids), reference) < EXACT
    assert _max_diff(_logits(_load(without), ids), reference) > 1e-2  # not dequantised: differs


def test_8bit_adapter_merge(tiny_llama_dir: Path, tmp_path: Path, ids) -> None:
    from peft import get_peft_model

    from camel_chat.model.loader import load_model, load_tokenizer

    model = get_peft_model(load_model(tiny_llama_dir, bits=8, for_training=True), _lora_config())
    _randomise_lora_b(model, seed=3)
    save_pretrained_with_template(model, load_tokenizer(tiny_llama_dir), "vicuna_v1.1", tmp_path / "a")
    assert read_metadata(tmp_path / "a")["quantization"]["bits"] == 8
    assert _merge(tiny_llama_dir, tmp_path / "a", tmp_path / "merged") == 0
    model.train()  # int8 weights dequantised then matmul, as in training
    assert _max_diff(_logits(_load(tmp_path / "merged"), ids), _logits(model, ids)) < EXACT  # measured 4e-7


def _merged_with_metadata(base: Path, adapter: Path, tmp_path: Path) -> Path:
    target = tmp_path / "reference"
    assert _merge(base, adapter, target) == 0
    return target


# --- templates without metadata -------------------------------------------------------------


def test_template_fallbacks_without_metadata(
    tiny_llama_dir: Path, lora_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    camel = tmp_path / "camel-lora"
    shutil.copytree(lora_dir, camel)
    for name in (METADATA_FILE, "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        (camel / name).unlink()
    assert _merge(tiny_llama_dir, camel, tmp_path / "a") == 0
    assert read_metadata(tmp_path / "a")["template"] == "vicuna_v1.1"  # FastChat's path fallback

    plain = tmp_path / "adapter"
    shutil.copytree(camel, plain)
    assert _merge(tiny_llama_dir, plain, tmp_path / "b") == 0
    assert read_metadata(tmp_path / "b") is None
    assert "no camel_chat template recorded" in capsys.readouterr().out
    assert (tmp_path / "b" / "tokenizer.json").is_file()

    assert _merge(tiny_llama_dir, plain, tmp_path / "c", "--template", "chatml") == 0
    assert read_metadata(tmp_path / "c")["template"] == "chatml"


# --- the target folder and bad input --------------------------------------------------------


def test_refuses_a_non_empty_target_without_force(
    tiny_llama_dir: Path, lora_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "target"
    target.mkdir()
    assert _merge(tiny_llama_dir, lora_dir, target) == 0  # an empty folder is fine
    keep = target / "notes.txt"
    keep.write_text("mine")
    capsys.readouterr()
    assert _merge(tiny_llama_dir, lora_dir, target) == 2
    err = capsys.readouterr().err
    assert "is not empty; pass --force" in err and "Traceback" not in err
    assert keep.read_text() == "mine"

    assert _merge(tiny_llama_dir, lora_dir, target, "--force") == 0
    assert not keep.exists() and (target / "model.safetensors").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no staging left


def test_failed_merge_leaves_no_half_written_target(
    tiny_llama_dir: Path, lora_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from camel_chat.model import apply_lora

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(apply_lora.checkpoint, "save_pretrained_with_template", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        _merge(tiny_llama_dir, lora_dir, tmp_path / "target")
    assert list(tmp_path.iterdir()) == []

    old = tmp_path / "old"
    old.mkdir()
    (old / "model.safetensors").write_text("previous")
    with pytest.raises(RuntimeError, match="disk full"):
        _merge(tiny_llama_dir, lora_dir, old, "--force")
    assert [p.name for p in tmp_path.iterdir()] == ["old"]  # the old target survives a failure
    assert (old / "model.safetensors").read_text() == "previous"


@pytest.mark.parametrize(
    ("which", "message"),
    [
        ("base", "--base-model-path '.*missing' does not exist"),
        ("lora", "--lora-path '.*missing' does not exist"),
        ("not-adapter", "has no adapter_config.json"),
        ("target-is-lora", "--target-model-path is the same folder as --lora-path"),
        ("target-is-file", "is a file"),
    ],
)
def test_bad_paths_exit_2_with_a_message(
    tiny_llama_dir: Path,
    lora_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    which: str,
    message: str,
) -> None:
    import re

    base, lora, target = tiny_llama_dir, lora_dir, tmp_path / "out"
    if which == "base":
        base = tmp_path / "missing"
    elif which == "lora":
        lora = tmp_path / "missing"
    elif which == "not-adapter":
        lora = tiny_llama_dir
    elif which == "target-is-lora":
        target = lora_dir
    else:
        target.write_text("x")
    assert _merge(base, lora, target, "--force") == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert (lora_dir / "adapter_config.json").is_file()  # --force never touched an input


def test_runs_as_a_module(tmp_path: Path) -> None:
    argv = [
        "--base-model-path",
        str(tmp_path / "nope"),
        "--lora-path",
        str(tmp_path),
        "--target-model-path",
        "x",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "camel_chat.model.apply_lora", *argv],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: --base-model-path") and "Traceback" not in result.stderr
    helped = subprocess.run(
        [sys.executable, "-m", "camel_chat.model.apply_lora", "--help"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    assert helped.returncode == 0 and "--no-dequant" in helped.stdout
