"""Self-describing checkpoints: the template a model was trained with travels with it.

A checkpoint folder written here holds, next to the weights (safetensors) and config.json:

    tokenizer files          with `chat_template` = to_jinja(template), so apply_chat_template,
                             vLLM, TGI or llama.cpp render exactly what we trained on
    generation_config.json   eos_token_id = [end-of-turn token(s) of the template, tokenizer EOS],
                             pad_token_id = the tokenizer's pad (never EOS)
    camel_chat.json          {"format": 1, "template": "vicuna_v1.1", "camel_chat_version": "2.0.0",
                              "adapter": false, "quantization": {...} (QLoRA adapters only), ...}

Serving finds a checkpoint's template with `template_for_checkpoint`: our metadata first,
then the tokenizer's own chat_template (a foreign model), then FastChat's fallback for old
checkpoints (a path containing "camel" or "vicuna" → vicuna_v1.1).

Under FSDP/DeepSpeed let the Trainer write the weights (`trainer.save_model(out)`), then call
`write_template_files(out, tokenizer, template, model=...)` on the main process.
The readers import nothing heavy.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from camel_chat.errors import CamelChatError, DataError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from camel_chat.templates import Template

METADATA_FILE = "camel_chat.json"
METADATA_FORMAT = 1
#: FastChat's template for model paths containing one of these (old checkpoints, no metadata).
FALLBACK_TEMPLATE = "vicuna_v1.1"
FALLBACK_PATH_WORDS = ("camel", "vicuna")
#: Files (and one folder) that make up a tokenizer across the tokenizer families we meet.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "spiece.model",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
    "additional_chat_templates",
)
TOKENIZER_GLOBS = ("*.tiktoken", "tokenization_*.py")


# --- reading -------------------------------------------------------------------------------


def read_metadata(path: str | Path) -> dict[str, Any] | None:
    """The checkpoint's `camel_chat.json` as a dict; None if the folder has none.

    A metadata file that is not a JSON object raises `DataError` naming it.
    """
    from camel_chat.json_input import read_json

    file = Path(path).expanduser() / METADATA_FILE
    if not file.is_file():
        return None
    data = read_json(file)
    if not isinstance(data, dict):
        raise DataError(file, "expected a JSON object")
    return data


def read_template_name(path: str | Path) -> str | None:
    """The template name recorded in the checkpoint's metadata; None if absent."""
    metadata = read_metadata(path)
    if metadata is None:
        return None
    name = metadata.get("template")
    if name is not None and not isinstance(name, str):
        raise DataError(Path(path) / METADATA_FILE, f"'template' must be a string, not {name!r}")
    return name


def template_for_checkpoint(path: str | Path, tokenizer: Any | None = None) -> str | None:
    """The camel_chat template to render prompts for the checkpoint at `path`, or None.

    1. the name in our metadata (a checkpoint we trained);
    2. None if `tokenizer` carries its own chat_template (serve a foreign model with it);
    3. FastChat's fallback for old checkpoints: a path containing "camel" or "vicuna"
       (case-insensitive) → "vicuna_v1.1";
    4. None: the caller must be told which template to use.
    """
    name = read_template_name(path)
    if name is not None:
        return name
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return None
    lowered = str(path).lower()
    if any(word in lowered for word in FALLBACK_PATH_WORDS):
        return FALLBACK_TEMPLATE
    return None


# --- writing -------------------------------------------------------------------------------


def _dtype_name(value: Any) -> str | None:
    return None if value is None else str(value).removeprefix("torch.")


def quantization_of(model: Any) -> dict[str, Any] | None:
    """How `model` (or a PeftModel's base) was quantised by bitsandbytes; None if it was not.

    `load_dtype` is the dtype the weights were quantised from: re-quantising the same
    checkpoint from that dtype reproduces the training-time 4-bit weights bit for bit.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    raw = getattr(config, "quantization_config", None)
    if raw is None:
        return None
    raw = raw if isinstance(raw, dict) else raw.to_dict()
    if raw.get("quant_method") != "bitsandbytes":
        return {"quant_method": str(raw.get("quant_method"))}
    bits = 4 if raw.get("load_in_4bit") else 8
    described: dict[str, Any] = {"quant_method": "bitsandbytes", "bits": bits}
    if bits == 4:
        described["quant_type"] = raw.get("bnb_4bit_quant_type", "nf4")
        described["double_quant"] = bool(raw.get("bnb_4bit_use_double_quant", False))
    described["compute_dtype"] = _dtype_name(raw.get("bnb_4bit_compute_dtype"))
    described["load_dtype"] = _dtype_name(getattr(config, "dtype", None))
    return described


def build_metadata(
    template_name: str, model: Any | None = None, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The contents of camel_chat.json for a checkpoint of `model` trained with `template_name`."""
    from camel_chat import __version__

    metadata: dict[str, Any] = {
        "format": METADATA_FORMAT,
        "template": template_name,
        "camel_chat_version": __version__,
        "adapter": model is not None and hasattr(model, "peft_config"),
    }
    quantization = quantization_of(model) if model is not None else None
    if quantization is not None:
        metadata["quantization"] = quantization
    metadata.update(extra or {})
    return metadata


def stop_token_ids(template: Template, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Ids that end a reply: the template's stop strings that are single special tokens, then EOS."""
    from camel_chat.templates import SpecialTokens

    special_ids = set(tokenizer.all_special_ids) | {
        i for i, token in tokenizer.added_tokens_decoder.items() if token.special
    }
    ids: list[int] = []
    for text in template.stop_strings(SpecialTokens.of(tokenizer)):
        encoded = tokenizer.encode(text, add_special_tokens=False)
        if len(encoded) == 1 and encoded[0] in special_ids:
            ids.append(encoded[0])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return list(dict.fromkeys(ids))


def _generation_config(model: Any | None, out: Path) -> Any:
    import copy

    from transformers import GenerationConfig

    existing = getattr(model, "generation_config", None) if model is not None else None
    if existing is not None:
        return copy.deepcopy(existing)
    if (out / "generation_config.json").is_file():
        return GenerationConfig.from_pretrained(out)
    return GenerationConfig()


def write_template_files(
    out_dir: str | Path,
    tokenizer: PreTrainedTokenizerBase,
    template_name: str,
    *,
    model: Any | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write the tokenizer (with the template as chat_template), generation_config.json and
    camel_chat.json into `out_dir`. The caller's tokenizer is left unchanged."""
    from camel_chat.templates import get_template, to_jinja

    template = get_template(template_name)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    previous = tokenizer.chat_template
    tokenizer.chat_template = to_jinja(template)
    try:
        tokenizer.save_pretrained(out)
    finally:
        tokenizer.chat_template = previous
    generation = _generation_config(model, out)
    if tokenizer.bos_token_id is not None:
        generation.bos_token_id = tokenizer.bos_token_id
    generation.eos_token_id = stop_token_ids(template, tokenizer)
    generation.pad_token_id = tokenizer.pad_token_id
    generation.save_pretrained(out)
    text = json.dumps(build_metadata(template_name, model, extra), indent=2, ensure_ascii=False)
    (out / METADATA_FILE).write_text(text + "\n", encoding="utf-8")


def save_pretrained_with_template(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    template_name: str,
    out_dir: str | Path,
    *,
    extra: dict[str, Any] | None = None,
) -> None:
    """Save `model` (safetensors; a PeftModel saves its adapter) and `write_template_files`.

    An unknown template raises `CamelChatError` before anything is written.
    """
    from camel_chat.templates import get_template

    get_template(template_name)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    write_template_files(out, tokenizer, template_name, model=model, extra=extra)


def has_tokenizer(path: str | Path) -> bool:
    """Whether the folder holds tokenizer files."""
    folder = Path(path)
    return (folder / "tokenizer_config.json").is_file() or (folder / "tokenizer.json").is_file()


def copy_tokenizer_and_metadata(src: str | Path, dst: str | Path) -> None:
    """Copy the tokenizer files (chat template included) and camel_chat.json from src to dst."""
    source, target = Path(src), Path(dst)
    if not source.is_dir():
        raise CamelChatError(f"{str(src)!r} is not a folder")
    if not has_tokenizer(source):
        raise CamelChatError(f"{str(src)!r} holds no tokenizer (no tokenizer_config.json or tokenizer.json)")
    target.mkdir(parents=True, exist_ok=True)
    names = [*TOKENIZER_FILES, METADATA_FILE]
    found = [source / name for name in names if (source / name).exists()]
    found += [p for pattern in TOKENIZER_GLOBS for p in sorted(source.glob(pattern))]
    for item in found:
        if item.is_dir():
            shutil.copytree(item, target / item.name, dirs_exist_ok=True)
        else:
            shutil.copy2(item, target / item.name)


def swap_into_place(staging: Path, target: Path) -> None:
    """Rename a fully written staging folder to `target`; an old target is moved aside first and
    deleted only after, so a failure at any point leaves either the old or the new checkpoint."""
    if not target.exists():
        os.replace(staging, target)
        return
    old = staging.with_name(staging.name + ".old")
    os.replace(target, old)
    try:
        os.replace(staging, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old)


@contextlib.contextmanager
def staged(target: Path) -> Iterator[Path]:
    """A new, empty folder beside `target` to write a checkpoint into: swapped into place
    (`swap_into_place`) when the block ends normally, deleted when it raises, so `target`
    is never half-written. Checking that `target` may be replaced is the caller's job."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # mkdir, not mkdtemp: the checkpoint keeps the umask's permissions, not 0700.
    staging = target.parent / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    staging.mkdir()
    try:
        yield staging
        swap_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
