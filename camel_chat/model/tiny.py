"""Tiny tokenizers and tiny random models, built in-process and offline, for tests and demos.

This module owns the recipe for the smallest checkpoints that still exercise the real code
paths: a ~1000-token byte-level BPE tokenizer trained on a generated corpus, and randomly
initialised `LlamaForCausalLM` / `Qwen2ForCausalLM` models (~200k parameters) sized to it.
Everything is deterministic for a seed, needs no network and takes well under a second
after imports.

    python -m camel_chat.model.tiny --out /tmp/tiny-llama                 # model + tokenizer
    python -m camel_chat.model.tiny --out /tmp/tiny-qwen2 --arch qwen2 --seed 1
    python -m camel_chat.model.tiny --out /tmp/tiny-tok --tokenizer-only

Nothing is imported from torch/transformers until a function is called, so light code may
import this module.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

Arch = Literal["llama", "qwen2"]
ARCHES: tuple[Arch, ...] = ("llama", "qwen2")

VOCAB_SIZE = 1000
UNK, BOS, EOS, PAD = "<unk>", "<s>", "</s>", "<pad>"
IM_START, IM_END, ENDOFTEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
# Trainer order fixes the ids: <unk>=0 <s>=1 </s>=2 <pad>=3 <|im_start|>=4 <|im_end|>=5
# <|endoftext|>=6, so tests can rely on them.
SPECIAL_TOKENS: tuple[str, ...] = (UNK, BOS, EOS, PAD, IM_START, IM_END, ENDOFTEXT)
EXTRA_SPECIAL_TOKENS: tuple[str, ...] = (IM_START, IM_END, ENDOFTEXT)

# The Qwen2 pre-tokenizer split. The tiny tokenizer uses Qwen2's exact pipeline (NFC, this
# split, byte-level without its own regex) because `AutoTokenizer` loads any folder whose
# config says `model_type: qwen2` as `Qwen2Tokenizer`, which rebuilds that pipeline and
# ignores the one in tokenizer.json; any other pipeline would change ids after a reload.
QWEN2_SPLIT_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

_COMMON_TEXT = (
    "the be to of and a in that have I it for not on with he as you do at this but his by "
    "from they we say her she or an will my one all would there their what so up out if "
    "about who get which go me when make can like time no just him know take people into "
    "year your good some could them see other than then now look only come its over think "
    "also back after use two how our work first well way even new want because any these "
    "give day most us is are was were been has had did said very much more many where why "
    "hello world please thank thanks help question answer explain write story code data "
    "model chat camel user assistant system human gpt agent role task solution instruction "
    "input output yes sure sorry here example list number name water city country python "
    "function return value true false"
)
# Syllable parts; "-" stands for an empty part (a vowel-initial or open syllable).
_ONSETS = "- b c d f g h j k l m n p r s t v w y z ch sh th st tr pl br gr"
_VOWELS = "a e i o u ai ea ou y io"
_CODAS = "- - - n r s t l m ng ck sh"
_PUNCT = ". . . ? ! , : ;"


def _corpus(seed: int, sentences: int = 20_000) -> Iterator[str]:
    """Yield a deterministic English-ish corpus: common words plus random syllable-words.

    Only ~200 distinct real words would stop BPE far below the target vocabulary, so most
    merges come from hundreds of made-up words. Capitals, digits, newlines and chat-style
    role prefixes make the merges cover what rendered conversations look like.
    """
    rng = random.Random(seed)
    common = _COMMON_TEXT.split()
    onsets, vowels, codas, punct = (
        [part.strip("-") for part in parts.split()] for parts in (_ONSETS, _VOWELS, _CODAS, _PUNCT)
    )

    def syllable() -> str:
        return rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas)

    invented = ["".join(syllable() for _ in range(rng.randint(1, 3))) for _ in range(800)]
    roles = ("USER: ", "ASSISTANT: ", "user\n", "assistant\n", "system\n", "### Instruction:\n")
    for _ in range(sentences):
        words = [
            rng.choice(common) if rng.random() < 0.6 else rng.choice(invented)
            for _ in range(rng.randint(3, 14))
        ]
        if rng.random() < 0.3:
            words[0] = words[0].capitalize()
        text = " ".join(words) + rng.choice(punct)
        if rng.random() < 0.15:
            text = rng.choice(roles) + text
        if rng.random() < 0.1:
            text += f" {rng.randint(0, 99_999)}"
        if rng.random() < 0.1:
            text += "\n\n" if rng.random() < 0.5 else "\n"
        yield text


def build_tiny_tokenizer(chat_template: str | None = None, seed: int = 0) -> PreTrainedTokenizerFast:
    """Train a ~1000-token byte-level BPE tokenizer and wrap it for transformers.

    Same seed, same vocabulary and ids on every run. Specials: `<unk>`=0, `<s>`=1 (bos),
    `</s>`=2 (eos), `<pad>`=3 (pad, distinct from eos), then `<|im_start|>`, `<|im_end|>`,
    `<|endoftext|>`. Encoding adds no BOS: the chat renderer adds it itself. Text is NFC
    normalised (as Qwen2 does), so `decode(encode(s)) == unicodedata.normalize("NFC", s)`
    for any string, and equals `s` for NFC text; byte-level BPE means no `<unk>` ever.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        # The full byte alphabet makes every string encodable, whatever the corpus lacked.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_corpus(seed), trainer=trainer)

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        # `additional_special_tokens` is the spelling both transformers 4 and 5 accept.
        additional_special_tokens=list(EXTRA_SPECIAL_TOKENS),
        # Explicit False makes transformers install a post-processor that adds nothing.
        add_bos_token=False,
        add_eos_token=False,
        # Without this, transformers 4 returns token_type_ids, which `generate` rejects.
        model_input_names=["input_ids", "attention_mask"],
        clean_up_tokenization_spaces=False,
    )
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return tokenizer


def build_tiny_model(
    arch: Arch,
    tokenizer: PreTrainedTokenizerFast,
    seed: int = 0,
    max_position_embeddings: int = 512,
) -> PreTrainedModel:
    """Build a randomly initialised tiny causal LM for `tokenizer` (eval mode, float32).

    Two layers, hidden 64, intermediate 128, 4 heads, 2 KV heads (so grouped-query attention
    is exercised), untied embeddings. Same seed, same weights; the caller's torch RNG state
    is left untouched.
    """
    import torch
    from transformers import (
        GenerationConfig,
        LlamaConfig,
        LlamaForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    if arch not in ARCHES:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHES)}")
    config_class, model_class = {
        "llama": (LlamaConfig, LlamaForCausalLM),
        "qwen2": (Qwen2Config, Qwen2ForCausalLM),
    }[arch]
    config = config_class(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )
    return model.eval()


def save_tiny(
    out_dir: str | Path,
    arch: Arch = "llama",
    chat_template: str | None = None,
    seed: int = 0,
    max_length: int = 512,
) -> Path:
    """Write a tiny checkpoint (safetensors, config, generation_config, tokenizer) to out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer(chat_template=chat_template, seed=seed)
    model = build_tiny_model(arch, tokenizer, seed=seed, max_position_embeddings=max_length)
    # A finite limit, like real checkpoints carry, so truncation defaults mean something.
    tokenizer.model_max_length = model.config.max_position_embeddings
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m camel_chat.model.tiny",
        description=(
            "Write a tiny random LLaMA or Qwen2 checkpoint with a locally trained ~1000-token "
            "byte-level BPE tokenizer (offline, deterministic for a seed, ~1 MB). "
            "Useful for demos and tests; the model's output is noise."
        ),
    )
    parser.add_argument("--out", required=True, type=Path, help="folder to write (created)")
    parser.add_argument("--arch", choices=ARCHES, default="llama", help="model architecture")
    parser.add_argument("--seed", type=int, default=0, help="seed for corpus and weights")
    parser.add_argument(
        "--chat-template",
        type=Path,
        metavar="FILE",
        help="Jinja chat template file to store in the tokenizer config",
    )
    parser.add_argument(
        "--template",
        metavar="NAME",
        help="store this camel_chat template (e.g. vicuna_v1.1) as the tokenizer's chat_template",
    )
    parser.add_argument(
        "--max-length", type=int, default=512, help="context length (max_position_embeddings), default 512"
    )
    parser.add_argument("--tokenizer-only", action="store_true", help="write only the tokenizer files")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, write the checkpoint and print its path."""
    parser = _parser()
    args = parser.parse_args(argv)
    template = None
    if args.chat_template is not None:
        if not args.chat_template.is_file():
            parser.error(f"--chat-template: no such file: {args.chat_template}")
        template = args.chat_template.read_text(encoding="utf-8")
    if args.template is not None:
        from camel_chat.errors import CamelChatError
        from camel_chat.templates import get_template, to_jinja

        try:
            template = to_jinja(get_template(args.template))
        except CamelChatError as exc:
            parser.error(f"--template: {exc}")
    if args.tokenizer_only:
        args.out.mkdir(parents=True, exist_ok=True)
        build_tiny_tokenizer(chat_template=template, seed=args.seed).save_pretrained(args.out)
        out = args.out
    else:
        out = save_tiny(
            args.out, arch=args.arch, chat_template=template, seed=args.seed, max_length=args.max_length
        )
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
