"""camel_chat.model.loader: tokenizer pad rules, dtypes, 4/8-bit loading, adapters, errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from camel_chat.errors import CamelChatError
from camel_chat.model import loader


def _random_lora(model, seed: int = 0):
    """A LoRA on every linear layer except lm_head, with random B so it changes the output."""
    import torch
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    return peft_model


def _ids():
    import torch

    return torch.randint(7, 1000, (2, 16), generator=torch.Generator().manual_seed(0))


# --- attention, dtypes, paths --------------------------------------------------------------


def test_default_attn_implementation(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    if not torch.cuda.is_available():
        assert loader.default_attn_implementation() == "sdpa"
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(
        loader.importlib.util,
        "find_spec",
        lambda name, *a: object() if name == "flash_attn" else real_find_spec(name, *a),
    )
    assert loader.default_attn_implementation() == "flash_attention_2"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert loader.default_attn_implementation() == "sdpa"


def test_parse_dtype_accepts_names_and_aliases() -> None:
    import torch

    assert loader.parse_dtype("auto") == "auto"
    assert loader.parse_dtype("bf16") is loader.parse_dtype("bfloat16") is torch.bfloat16
    assert loader.parse_dtype("fp16") is torch.float16
    assert loader.parse_dtype("float32") is torch.float32
    with pytest.raises(CamelChatError, match="unknown dtype 'float33'"):
        loader.parse_dtype("float33")


def test_checkpoint_dtype_reads_config(tiny_llama_dir: Path, tmp_path: Path) -> None:
    import torch

    assert loader.checkpoint_dtype(tiny_llama_dir) is torch.float32
    assert loader.checkpoint_dtype(tmp_path) is None
    (tmp_path / "config.json").write_text('{"torch_dtype": "bfloat16"}')
    assert loader.checkpoint_dtype(tmp_path) is torch.bfloat16


def test_check_model_path(tmp_path: Path) -> None:
    assert loader.check_model_path(tmp_path) == str(tmp_path)
    assert loader.check_model_path("org/model-1.5") == "org/model-1.5"  # a Hub id
    for missing in (tmp_path / "missing", "./missing", "a/b/c"):
        with pytest.raises(CamelChatError, match="does not exist"):
            loader.check_model_path(missing, "--model_name_or_path")
    (tmp_path / "file").write_text("x")
    with pytest.raises(CamelChatError, match="is a file"):
        loader.check_model_path(tmp_path / "file")


# --- tokenizer -----------------------------------------------------------------------------


def test_load_tokenizer_tiny_keeps_its_pad(tiny_llama_dir: Path) -> None:
    tok = loader.load_tokenizer(tiny_llama_dir, model_max_length=128)
    assert tok.is_fast
    assert tok.padding_side == "right"
    assert tok.model_max_length == 128
    assert (tok.pad_token, tok.pad_token_id) == ("<pad>", 3)
    assert tok.pad_token_id != tok.eos_token_id
    assert len(tok) == 1000


def test_load_tokenizer_llama_uses_unk_as_pad(real_tokenizer_dirs: dict[str, Path]) -> None:
    tok = loader.load_tokenizer(real_tokenizer_dirs["llama-sp"])
    assert (tok.pad_token, tok.pad_token_id) == ("<unk>", 0)  # the seed's choice, no new token
    assert len(tok) == 32000
    assert tok.padding_side == "right"


def test_load_tokenizer_can_leave_specials_alone(real_tokenizer_dirs: dict[str, Path]) -> None:
    tok = loader.load_tokenizer(real_tokenizer_dirs["llama-sp"], ensure_pad=False)
    assert tok.pad_token is None


def test_load_tokenizer_qwen2_keeps_endoftext(real_tokenizer_dirs: dict[str, Path]) -> None:
    tok = loader.load_tokenizer(real_tokenizer_dirs["qwen2"])
    assert (tok.pad_token, tok.eos_token) == ("<|endoftext|>", "<|im_end|>")
    assert len(tok) == 151646


def test_pad_equal_to_eos_without_unk_adds_a_pad_and_the_model_is_resized(tiny_llama_dir: Path) -> None:
    from camel_chat.model.tiny import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    tok.pad_token = tok.eos_token
    tok.unk_token = None
    assert loader.ensure_pad_token(tok) is True
    assert tok.pad_token == loader.ADDED_PAD_TOKEN
    assert (tok.pad_token_id, len(tok)) == (1000, 1001)
    assert loader.ensure_pad_token(tok) is False  # idempotent

    model = loader.load_model(tiny_llama_dir, tokenizer=tok)
    assert model.get_input_embeddings().weight.shape[0] == 1001
    assert model.get_output_embeddings().weight.shape[0] == 1001
    assert loader.resize_embeddings_for(model, tok) is False


def test_pad_equal_to_eos_uses_unk_when_it_differs() -> None:
    from camel_chat.model.tiny import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    tok.pad_token = tok.eos_token
    assert loader.ensure_pad_token(tok) is False
    assert tok.pad_token == "<unk>"


def test_load_tokenizer_missing_path(tmp_path: Path) -> None:
    with pytest.raises(CamelChatError, match=r"tokenizer path .* does not exist"):
        loader.load_tokenizer(tmp_path / "nope")
    with pytest.raises(CamelChatError, match="cannot load a tokenizer"):
        loader.load_tokenizer(tmp_path)  # exists, but empty


# --- models --------------------------------------------------------------------------------


def test_load_model_dtype_and_modes(tiny_llama_dir: Path) -> None:
    import torch

    model = loader.load_model(tiny_llama_dir)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.dtype is torch.float32  # "auto": the checkpoint's
    assert not model.training
    assert model.config._attn_implementation == "sdpa"
    assert model.config.use_cache is True

    bf16 = loader.load_model(tiny_llama_dir, dtype="bfloat16", attn_implementation="eager")
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}
    assert bf16.config._attn_implementation == "eager"

    training = loader.load_model(tiny_llama_dir, for_training=True)
    assert training.config.use_cache is False


def test_load_model_4bit_and_8bit_on_cpu(tiny_llama_dir: Path) -> None:
    import bitsandbytes as bnb
    import torch

    model = loader.load_model(tiny_llama_dir, bits=4, dtype="float32")
    assert isinstance(model.model.layers[0].self_attn.q_proj, bnb.nn.Linear4bit)
    assert not isinstance(model.lm_head, bnb.nn.Linear4bit)
    config = model.config.quantization_config
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4"
    assert config.bnb_4bit_use_double_quant is True
    assert config.bnb_4bit_compute_dtype is torch.float32  # follows the model dtype
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=_ids()).logits).all()

    fp4 = loader.load_model(
        tiny_llama_dir, bits=4, quant_type="fp4", double_quant=False, compute_dtype="bf16"
    )
    fp4_config = fp4.config.quantization_config
    assert fp4_config.bnb_4bit_quant_type == "fp4" and not fp4_config.bnb_4bit_use_double_quant
    assert fp4_config.bnb_4bit_compute_dtype is torch.bfloat16

    int8 = loader.load_model(tiny_llama_dir, bits=8)
    assert isinstance(int8.model.layers[0].mlp.down_proj, bnb.nn.Linear8bitLt)


def test_load_model_bad_input(tiny_llama_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(CamelChatError, match=r"model path .* does not exist"):
        loader.load_model(tmp_path / "missing")
    with pytest.raises(CamelChatError, match="cannot load a model"):
        loader.load_model(tmp_path)  # an empty folder
    with pytest.raises(CamelChatError, match="unknown dtype 'half'"):
        loader.load_model(tiny_llama_dir, dtype="half")
    with pytest.raises(CamelChatError, match="bits must be 4, 8 or 16"):
        loader.load_model(tiny_llama_dir, bits=3)
    with pytest.raises(CamelChatError, match="unknown quant_type 'nf3'"):
        loader.load_model(tiny_llama_dir, bits=4, quant_type="nf3")
    with pytest.raises(CamelChatError, match=r"adapter path .* does not exist"):
        loader.load_model(tiny_llama_dir, adapter_path=tmp_path / "no-adapter")

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        loader.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "bitsandbytes" else real_find_spec(name, *a),
    )
    with pytest.raises(CamelChatError, match=r"bits=4 needs bitsandbytes.*camel_chat\[train\]"):
        loader.load_model(tiny_llama_dir, bits=4)


def test_load_model_with_adapter(tiny_llama_dir: Path, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel

    reference = _random_lora(loader.load_model(tiny_llama_dir), seed=1)
    reference.save_pretrained(tmp_path / "adapter")
    with torch.no_grad():
        expected = reference(input_ids=_ids()).logits

    model = loader.load_model(tiny_llama_dir, adapter_path=tmp_path / "adapter")
    assert isinstance(model, PeftModel)
    assert not any(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        assert torch.equal(model(input_ids=_ids()).logits, expected)

    trainable = loader.load_model(tiny_llama_dir, adapter_path=tmp_path / "adapter", for_training=True)
    names = [n for n, p in trainable.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert trainable.config.use_cache is False
