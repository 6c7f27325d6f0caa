"""Tiny tokenizer/models (camel_chat.model.tiny) and the real tokenizers (tools/real_tokenizers.py)."""

from __future__ import annotations

import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import pytest

from camel_chat.model.tiny import build_tiny_model, build_tiny_tokenizer, main, save_tiny

UNICODE_SAMPLES = [
    "Hello world, this is a test.",
    "USER: hi\nASSISTANT: hello!</s>",
    "  leading, trailing and  double  spaces \t tabs\n\n\n",
    "你好，世界 🐫🏜️ naïve café Ünïcödé ß ﬁ",
    "مرحبا بالعالم — שלום — Привет",
    "math: ∑ x² ≤ ∞; code: `f(x) => {x: [1, 2]}`",
    "\x00\x1b[31m control \u200b zero-width \ufeff",
    "12345678901234567890 3.14159 -0.5e-3",
    "<|im_start|>user\nhi<|im_end|>\n<pad><unk><s>",
]


# --- tiny tokenizer ------------------------------------------------------------------------


def test_tokenizer_is_deterministic_for_a_seed() -> None:
    first, second = build_tiny_tokenizer(), build_tiny_tokenizer()
    assert first.backend_tokenizer.to_str() == second.backend_tokenizer.to_str()
    assert first.get_vocab() == second.get_vocab()
    assert first(UNICODE_SAMPLES[0]).input_ids == second(UNICODE_SAMPLES[0]).input_ids
    assert build_tiny_tokenizer(seed=1).get_vocab() != first.get_vocab()


def test_tokenizer_special_tokens(tiny_tokenizer) -> None:
    tok = tiny_tokenizer
    assert len(tok) == 1000
    assert (tok.unk_token, tok.bos_token, tok.eos_token, tok.pad_token) == (
        "<unk>",
        "<s>",
        "</s>",
        "<pad>",
    )
    assert (tok.unk_token_id, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (0, 1, 2, 3)
    assert tok.pad_token_id != tok.eos_token_id
    assert tok.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>", "<|endoftext|>"]) == [4, 5, 6]
    assert set(tok.all_special_tokens) == {
        "<unk>",
        "<s>",
        "</s>",
        "<pad>",
        "<|im_start|>",
        "<|im_end|>",
        "<|endoftext|>",
    }
    assert tok.model_input_names == ["input_ids", "attention_mask"]
    assert tok.chat_template is None


def test_tokenizer_adds_no_bos(tiny_tokenizer) -> None:
    encoded = tiny_tokenizer("hello world")
    assert tiny_tokenizer.bos_token_id not in encoded.input_ids
    assert encoded.input_ids == tiny_tokenizer("hello world", add_special_tokens=False).input_ids
    assert set(encoded) == {"input_ids", "attention_mask"}
    assert tiny_tokenizer("").input_ids == []
    # Specials typed in text are single tokens; that is what chat rendering relies on.
    assert tiny_tokenizer("<s><|im_start|></s>").input_ids == [1, 4, 2]


@pytest.mark.parametrize("text", UNICODE_SAMPLES)
def test_tokenizer_round_trips_unicode(tiny_tokenizer, text: str) -> None:
    ids = tiny_tokenizer(text).input_ids
    if "<unk>" not in text:
        assert tiny_tokenizer.unk_token_id not in ids  # byte-level: nothing is unknown
    assert tiny_tokenizer.decode(ids) == unicodedata.normalize("NFC", text)


def test_tokenizer_normalises_to_nfc(tiny_tokenizer) -> None:
    # Qwen2's NFC normaliser is part of the recipe (see tiny.py): decomposed input comes
    # back composed, and both spellings give the same ids.
    decomposed, composed = "cafe\u0301", "caf\u00e9"
    assert tiny_tokenizer(decomposed).input_ids == tiny_tokenizer(composed).input_ids
    assert tiny_tokenizer.decode(tiny_tokenizer(decomposed).input_ids) == composed


def test_tokenizer_carries_chat_template() -> None:
    template = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    tok = build_tiny_tokenizer(chat_template=template)
    assert tok.chat_template == template
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert text == "<|im_start|>user\nhi<|im_end|>\n"


def test_module_import_is_light() -> None:
    code = (
        "import sys, camel_chat.model.tiny; "
        "assert not {'torch', 'transformers', 'tokenizers'} & set(sys.modules), sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


# --- tiny models ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "class_name", "n_params"),
    [("llama", "LlamaForCausalLM", 202_048), ("qwen2", "Qwen2ForCausalLM", 202_304)],
)
def test_model_builds_deterministically_and_generates(
    tiny_tokenizer, arch: str, class_name: str, n_params: int
) -> None:
    import torch

    rng_before = torch.get_rng_state()
    model = build_tiny_model(arch, tiny_tokenizer, seed=0)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's RNG is untouched
    assert type(model).__name__ == class_name
    assert sum(p.numel() for p in model.parameters()) == n_params
    assert not model.training
    config = model.config
    assert (config.vocab_size, config.max_position_embeddings) == (len(tiny_tokenizer), 512)
    assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == (1, 2, 3)
    assert config.tie_word_embeddings is False
    assert model.lm_head.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr()

    again = build_tiny_model(arch, tiny_tokenizer, seed=0)
    other = build_tiny_model(arch, tiny_tokenizer, seed=1)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[name]), name
    assert not torch.equal(model.lm_head.weight, other.lm_head.weight)

    prompts = ["hello world", "a longer camel question here"]
    inputs = tiny_tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left")
    out = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert out.shape == (2, inputs.input_ids.shape[1] + 4)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_saved_checkpoint_reloads_bit_identically(
    request: pytest.FixtureRequest, tiny_tokenizer, arch: str
) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    folder: Path = request.getfixturevalue(f"tiny_{arch}_dir")
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"} <= names
    assert "pytorch_model.bin" not in names

    reference = build_tiny_model(arch, tiny_tokenizer, seed=0)
    loaded = AutoModelForCausalLM.from_pretrained(folder)
    assert type(loaded) is type(reference)
    ref_state, got_state = reference.state_dict(), loaded.state_dict()
    assert ref_state.keys() == got_state.keys()
    for name, tensor in ref_state.items():
        assert torch.equal(tensor, got_state[name]), name
    generation = GenerationConfig.from_pretrained(folder)
    assert (generation.bos_token_id, generation.eos_token_id, generation.pad_token_id) == (1, 2, 3)

    # The qwen2 folder reloads as Qwen2Tokenizer, which rebuilds its own pipeline; the
    # tiny recipe uses that same pipeline, so the ids must not change.
    reloaded = AutoTokenizer.from_pretrained(folder)
    assert reloaded.get_vocab() == tiny_tokenizer.get_vocab()
    assert reloaded.model_max_length == 512
    for text in [*UNICODE_SAMPLES, "cafe\u0301"]:
        assert reloaded(text).input_ids == tiny_tokenizer(text).input_ids, text

    prompt = reloaded("hello camel", return_tensors="pt")
    expected = reference.generate(**prompt, max_new_tokens=5, do_sample=False)
    assert torch.equal(loaded.generate(**prompt, max_new_tokens=5, do_sample=False), expected)


def test_save_tiny_with_chat_template(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    template = "{% for m in messages %}{{ m.content }}{% endfor %}"
    folder = save_tiny(tmp_path / "ckpt", arch="llama", chat_template=template, seed=3)
    assert AutoTokenizer.from_pretrained(folder).chat_template == template


def test_main_writes_tokenizer_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out", str(tmp_path / "tok"), "--tokenizer-only"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "tok")
    assert (tmp_path / "tok" / "tokenizer.json").is_file()
    assert not (tmp_path / "tok" / "config.json").exists()


# --- real tokenizers -----------------------------------------------------------------------


def test_llama_sp_tokenizer_matches_known_ids(llama_sp_tokenizer) -> None:
    tok = llama_sp_tokenizer
    text = "Hello world, this is a test."
    expected = [22557, 1526, 28725, 456, 349, 264, 1369, 28723]
    assert len(tok) == 32000
    assert tok.convert_ids_to_tokens([0, 1, 2]) == ["<unk>", "<s>", "</s>"]
    assert (tok.unk_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert tok.pad_token is None  # as in real LLaMA checkpoints
    assert tok(text, add_special_tokens=False).input_ids == expected
    assert tok(text).input_ids == [1, *expected]  # adds BOS like a real LLaMA tokenizer
    # Pinned transformers 5 quirk: with a tokenizer.json, `add_bos_token` from the config is
    # ignored and the attribute reads False although the post-processor adds BOS. Detect BOS
    # by encoding, never by this attribute.
    assert tok.add_bos_token is False


def test_llama_sp_agrees_with_sentencepiece(real_tokenizer_dirs, llama_sp_tokenizer) -> None:
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor(
        model_file=str(real_tokenizer_dirs["llama-sp"] / "tokenizer.model")
    )
    for text in ["USER: hi\nASSISTANT: hello</s>", "你好 🐫 tést", "a\tb\n\nc"]:
        expected = processor.encode(text.removesuffix("</s>"))
        got = llama_sp_tokenizer(text.removesuffix("</s>"), add_special_tokens=False).input_ids
        assert got == expected, text
    # Pinned divergence of the converted BPE from sentencepiece on runs of spaces.
    text = "  two  spaces"
    assert processor.encode(text) == [259, 989, 28705, 10599]
    assert llama_sp_tokenizer(text, add_special_tokens=False).input_ids == [259, 10861, 259, 886, 2089]


def test_llama_sp_legacy_behaviour_is_pinned(real_tokenizer_dirs, llama_sp_tokenizer) -> None:
    from transformers import AutoTokenizer

    # transformers 5's LlamaTokenizer defaults to legacy=False (Metaspace prepend_scheme
    # "first"): text right after a special token gets no "▁" prefix, so "</s>USER" is
    # ['</s>', 'USER'], while "USER" at the start of a string is ['▁US', 'ER']. A renderer
    # that tokenizes segments separately must not assume the two agree.
    tok = llama_sp_tokenizer
    assert tok.legacy is False
    assert tok("</s>USER", add_special_tokens=False).input_ids == [2, 11123]
    assert tok.convert_ids_to_tokens([11123]) == ["USER"]
    assert tok("USER", add_special_tokens=False).input_ids == [2223, 725]
    assert tok("</s> USER", add_special_tokens=False).input_ids == [2, 2223, 725]
    # legacy=True (the transformers 4 slow-tokenizer behaviour) prefixes after specials too.
    legacy = AutoTokenizer.from_pretrained(real_tokenizer_dirs["llama-sp"], legacy=True)
    assert legacy.legacy is True
    assert legacy("</s>USER", add_special_tokens=False).input_ids == [2, 2223, 725]


def test_qwen2_tokenizer_matches_known_ids(qwen2_tokenizer) -> None:
    tok = qwen2_tokenizer
    text = "Hello world, this is a test. 你好"
    assert len(tok) == 151646
    assert tok(text).input_ids == [9707, 1879, 11, 419, 374, 264, 1273, 13, 220, 108386]
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [
        151643,
        151644,
        151645,
    ]
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == (None, "<|im_end|>", "<|endoftext|>")
    assert tok.decode(tok(text).input_ids) == text
    rendered = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert rendered == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_real_tokenizers_are_cached(real_tokenizers_tool, real_tokenizer_dirs) -> None:
    tool = real_tokenizers_tool
    cache_dir = real_tokenizer_dirs["qwen2"].parent
    start = time.perf_counter()
    assert tool.ensure_real_tokenizers(cache_dir) == real_tokenizer_dirs
    assert time.perf_counter() - start < 0.5
    for folder in real_tokenizer_dirs.values():
        assert (folder / tool.MARKER).is_file()
