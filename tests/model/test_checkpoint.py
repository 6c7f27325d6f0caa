"""camel_chat.model.checkpoint: self-describing checkpoints (template, generation config, metadata)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from camel_chat.conversation import Conversation
from camel_chat.errors import CamelChatError, DataError
from camel_chat.model import checkpoint
from camel_chat.model.checkpoint import (
    METADATA_FILE,
    copy_tokenizer_and_metadata,
    read_metadata,
    read_template_name,
    save_pretrained_with_template,
    stop_token_ids,
    template_for_checkpoint,
)
from camel_chat.templates import SpecialTokens, get_template, render_text

CONVERSATION = Conversation.of(
    ("user", "Hello there!"),
    ("assistant", "Hi, how can I help?"),
    ("user", "Tell me about camels."),
    ("assistant", "They store fat in their humps."),
)


def _messages(conversation: Conversation) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in conversation.messages]


@pytest.fixture(scope="module")
def tiny_parts(tiny_llama_dir: Path):
    from camel_chat.model.loader import load_model, load_tokenizer

    return load_model(tiny_llama_dir), load_tokenizer(tiny_llama_dir)


@pytest.mark.parametrize(
    ("name", "eos_ids"), [("vicuna_v1.1", [2]), ("chatml", [5, 6, 2]), ("one_shot", [2])]
)
def test_saved_checkpoint_is_standard_and_self_describing(
    tiny_parts, tmp_path: Path, name: str, eos_ids: list[int]
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    model, tokenizer = tiny_parts
    out = tmp_path / "ckpt"
    save_pretrained_with_template(model, tokenizer, name, out)

    files = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", METADATA_FILE} <= files
    assert not any(f.endswith(".bin") for f in files)
    assert tokenizer.chat_template is None  # the caller's tokenizer is untouched

    reloaded = AutoModelForCausalLM.from_pretrained(out)
    for key, tensor in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[key], tensor), key

    # apply_chat_template on the saved tokenizer renders exactly what we train on.
    tok = AutoTokenizer.from_pretrained(out)
    template = get_template(name)
    special = SpecialTokens.of(tok)
    assert tok.apply_chat_template(_messages(CONVERSATION), tokenize=False) == render_text(
        template, CONVERSATION, special=special
    )
    prompt = Conversation.of(*[(m.role, m.content) for m in CONVERSATION.messages[:3]])
    assert tok.apply_chat_template(
        _messages(prompt), tokenize=False, add_generation_prompt=True
    ) == render_text(template, prompt, add_generation_prompt=True, special=special)

    generation = GenerationConfig.from_pretrained(out)
    assert generation.eos_token_id == eos_ids  # end of turn first, then the tokenizer's EOS
    assert generation.pad_token_id == 3 != tok.eos_token_id
    assert generation.bos_token_id == 1

    metadata = json.loads((out / METADATA_FILE).read_text())
    assert metadata == {"format": 1, "template": name, "camel_chat_version": "2.0.0", "adapter": False}
    assert read_template_name(out) == name


def test_extra_metadata_is_recorded(tiny_parts, tmp_path: Path) -> None:
    model, tokenizer = tiny_parts
    save_pretrained_with_template(model, tokenizer, "vicuna_v1.1", tmp_path, extra={"base_model": "x"})
    assert read_metadata(tmp_path)["base_model"] == "x"


def test_unknown_template_writes_nothing(tiny_parts, tmp_path: Path) -> None:
    model, tokenizer = tiny_parts
    with pytest.raises(CamelChatError, match="unknown template 'nope'"):
        save_pretrained_with_template(model, tokenizer, "nope", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_qlora_adapter_records_its_quantization(tiny_llama_dir: Path, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model

    from camel_chat.model.loader import load_model, load_tokenizer

    base = load_model(tiny_llama_dir, bits=4, dtype="float32", for_training=True)
    adapter = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear"))
    save_pretrained_with_template(adapter, load_tokenizer(tiny_llama_dir), "vicuna_v1.1", tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", METADATA_FILE} <= files
    assert "model.safetensors" not in files
    metadata = read_metadata(tmp_path)
    assert metadata["adapter"] is True
    assert metadata["quantization"] == {
        "quant_method": "bitsandbytes",
        "bits": 4,
        "quant_type": "nf4",
        "double_quant": True,
        "compute_dtype": "float32",
        "load_dtype": "float32",
    }


def test_stop_token_ids_with_real_tokenizers(llama_sp_tokenizer, qwen2_tokenizer) -> None:
    assert stop_token_ids(get_template("vicuna_v1.1"), llama_sp_tokenizer) == [2]
    assert stop_token_ids(get_template("one_shot"), llama_sp_tokenizer) == [2]  # "###" is plain text
    # <|im_end|> ends a turn; <|endoftext|> is the template's extra stop; EOS is <|im_end|>.
    assert stop_token_ids(get_template("chatml"), qwen2_tokenizer) == [151645, 151643]


# --- reading metadata and choosing a template ----------------------------------------------


def test_read_template_name_absent_and_malformed(tmp_path: Path) -> None:
    assert read_template_name(tmp_path) is None
    assert read_metadata(tmp_path / "missing") is None
    (tmp_path / METADATA_FILE).write_text("{not json")
    with pytest.raises(DataError, match=METADATA_FILE):
        read_template_name(tmp_path)
    (tmp_path / METADATA_FILE).write_text("[1]")
    with pytest.raises(DataError, match="expected a JSON object"):
        read_metadata(tmp_path)
    (tmp_path / METADATA_FILE).write_text('{"template": 3}')
    with pytest.raises(DataError, match="'template' must be a string"):
        read_template_name(tmp_path)


def test_template_for_checkpoint(tmp_path: Path, tiny_tokenizer) -> None:
    from camel_chat.model.tiny import build_tiny_tokenizer

    ours = tmp_path / "CAMEL-13B-ours"
    ours.mkdir()
    (ours / METADATA_FILE).write_text('{"template": "chatml"}')
    assert template_for_checkpoint(ours) == "chatml"  # metadata beats the path fallback

    old = tmp_path / "finetuned_models" / "CAMEL-13B-Combined-Data"
    old.mkdir(parents=True)
    assert template_for_checkpoint(old, tiny_tokenizer) == "vicuna_v1.1"
    assert template_for_checkpoint(tmp_path / "lmsys" / "Vicuna-7B") == "vicuna_v1.1"
    assert template_for_checkpoint("camel-ai/CAMEL-33B-Combined-Data") == "vicuna_v1.1"
    assert template_for_checkpoint(tmp_path / "llama-2-7b", tiny_tokenizer) is None

    foreign = build_tiny_tokenizer(chat_template="{{ messages[0]['content'] }}")
    assert template_for_checkpoint(old, foreign) is None  # its own chat_template wins


def test_copy_tokenizer_and_metadata(tiny_parts, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    model, tokenizer = tiny_parts
    src, dst = tmp_path / "src", tmp_path / "dst"
    save_pretrained_with_template(model, tokenizer, "vicuna_v1.1", src)
    copy_tokenizer_and_metadata(src, dst)
    names = {p.name for p in dst.iterdir()}
    assert METADATA_FILE in names and "tokenizer.json" in names
    assert "model.safetensors" not in names and "config.json" not in names
    assert read_metadata(dst) == read_metadata(src)
    copied, original = AutoTokenizer.from_pretrained(dst), AutoTokenizer.from_pretrained(src)
    assert copied.chat_template == original.chat_template is not None
    assert copied.get_vocab() == original.get_vocab()

    with pytest.raises(CamelChatError, match="holds no tokenizer"):
        copy_tokenizer_and_metadata(tmp_path / "dst" / "..", tmp_path / "x")
    with pytest.raises(CamelChatError, match="is not a folder"):
        copy_tokenizer_and_metadata(tmp_path / "missing", tmp_path / "x")


def test_modules_import_no_torch() -> None:
    code = (
        "import sys\n"
        "import camel_chat.model.checkpoint, camel_chat.model.loader, camel_chat.model.apply_lora\n"
        "assert not {'torch', 'transformers', 'peft'} & set(sys.modules), 'heavy import'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
    assert checkpoint.FALLBACK_TEMPLATE == "vicuna_v1.1"
