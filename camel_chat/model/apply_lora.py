"""Merge a LoRA/QLoRA adapter into its base model and save a plain dense checkpoint.

    python -m camel_chat.model.apply_lora --base-model-path BASE --target-model-path OUT \\
        --lora-path ADAPTER [--dtype auto|float32|bfloat16|float16] [--device cpu|cuda] [--force]

The merged folder is a standard checkpoint (safetensors, config.json without any
quantisation, generation_config.json) with the adapter's tokenizer, chat template and
template name (see `checkpoint.py`). dtype defaults to the base checkpoint's.

QLoRA: an adapter trained on a 4-bit (or 8-bit) base learned corrections to the *quantised*
weights, so by default the base is quantised again exactly as in training (settings from
the adapter's camel_chat.json, or `--bits` for adapters made elsewhere), dequantised, and
the adapter merged into that; `--no-dequant` merges onto the original 16-bit weights instead.

The target must be missing or empty unless `--force`; the result is written to a temporary
folder beside it and renamed into place, so a failed merge leaves no half-written target.
Exit status: 0 merged, 2 bad input (message on stderr).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from camel_chat.errors import CamelChatError, run_command
from camel_chat.model import checkpoint, loader

#: The seed's QLoRA settings, used with --bits for adapters that carry no camel_chat.json.
DEFAULT_QUANTIZATION: dict[str, Any] = {"quant_type": "nf4", "double_quant": True}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m camel_chat.model.apply_lora",
        description="Merge a LoRA/QLoRA adapter into its base model and save the dense result.",
    )
    parser.add_argument("--base-model-path", required=True, help="base model folder (or Hub id)")
    parser.add_argument("--target-model-path", required=True, help="folder to write the merged model to")
    parser.add_argument("--lora-path", required=True, help="adapter folder (adapter_config.json)")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="dtype of the merged weights (default: the base checkpoint's)",
    )
    parser.add_argument("--device", default="cpu", help="where to merge: cpu (default), cuda, cuda:1, ...")
    parser.add_argument("--force", action="store_true", help="replace a non-empty target folder")
    parser.add_argument(
        "--no-dequant",
        action="store_true",
        help="for a QLoRA adapter, merge onto the original 16-bit base instead of the dequantised 4-bit one",
    )
    parser.add_argument(
        "--bits",
        type=int,
        choices=[4, 8],
        help="the adapter was trained on a 4/8-bit base (nf4, double quant); "
        "only needed when the adapter has no camel_chat.json saying so",
    )
    parser.add_argument(
        "--template",
        help="template to record in the merged model (default: the adapter's camel_chat.json, "
        "else vicuna_v1.1 for a camel/vicuna path, else the tokenizer's own chat_template is kept)",
    )
    parser.add_argument("--trust-remote-code", action="store_true", help="allow the base's custom code")
    return parser


def _check_paths(base: str, lora: str, target: Path, force: bool) -> None:
    loader.check_model_path(base, "--base-model-path")
    lora_dir = loader.check_adapter_path(lora, "--lora-path")
    if target.exists() and not target.is_dir():
        raise CamelChatError(f"--target-model-path {str(target)!r} is a file")
    resolved = target.resolve()
    for flag, path in (("--base-model-path", Path(base).expanduser()), ("--lora-path", lora_dir)):
        if path.exists() and path.resolve() == resolved:
            raise CamelChatError(f"--target-model-path is the same folder as {flag}")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise CamelChatError(f"--target-model-path {str(target)!r} is not empty; pass --force to replace it")


def _quantization(metadata: dict[str, Any], bits: int | None) -> dict[str, Any] | None:
    """The quantisation the adapter was trained under: --bits wins, then the metadata."""
    if bits is not None:
        recorded = metadata.get("quantization") or {}
        return {**DEFAULT_QUANTIZATION, **recorded, "bits": bits}
    recorded = metadata.get("quantization")
    if not recorded:
        return None
    if recorded.get("quant_method", "bitsandbytes") != "bitsandbytes" or recorded.get("bits") not in (4, 8):
        raise CamelChatError(f"adapter metadata: cannot re-create quantisation {recorded!r}")
    return {**DEFAULT_QUANTIZATION, **recorded}


def _load_dequantized(base: str, quant: dict[str, Any], dtype: Any, device: str, **kwargs: Any) -> Any:
    """The base quantised as in training, then dequantised to dense `dtype` Linear layers.

    Quantising from `load_dtype` (the dtype training loaded the base in) reproduces the
    training-time 4-bit weights exactly. Nothing may run a forward pass before
    dequantising: bitsandbytes' CPU inference path repacks 4-bit weights in place, after
    which `dequantize_4bit` no longer reads them correctly.
    """
    load_dtype = quant.get("load_dtype") or str(dtype).removeprefix("torch.")
    model = loader.load_model(
        base,
        dtype=load_dtype,
        device=device,
        bits=int(quant["bits"]),
        quant_type=quant.get("quant_type", "nf4"),
        double_quant=bool(quant.get("double_quant", True)),
        compute_dtype=quant.get("compute_dtype"),
        **kwargs,
    )
    model = model.dequantize(dtype=dtype)
    return model.to(dtype)


def merge(
    base: str,
    lora: str,
    *,
    dtype: str = "auto",
    device: str = "cpu",
    dequant: bool = True,
    bits: int | None = None,
    trust_remote_code: bool = False,
) -> tuple[Any, Any, dict[str, Any]]:
    """Load base + adapter, merge, and return (dense model, tokenizer, what was done)."""
    import torch

    metadata = checkpoint.read_metadata(lora) or {}
    quant = _quantization(metadata, bits)
    torch_dtype = loader.parse_dtype(dtype)
    if torch_dtype == "auto":
        torch_dtype = loader.checkpoint_dtype(base) or torch.float32
    # The adapter's own tokenizer (saved by training, pad token and all) wins; a base
    # tokenizer is copied as it is, so the merged vocabulary stays the base's.
    from_adapter = checkpoint.has_tokenizer(lora)
    tokenizer = loader.load_tokenizer(
        lora if from_adapter else base, trust_remote_code=trust_remote_code, ensure_pad=from_adapter
    )
    common = {"tokenizer": tokenizer, "trust_remote_code": trust_remote_code}
    if quant is not None and dequant:
        model = _load_dequantized(base, quant, torch_dtype, device, **common)
    else:
        name = str(torch_dtype).removeprefix("torch.")
        model = loader.load_model(base, dtype=name, device=device, **common)
    model = loader.attach_adapter(model, lora)
    merged = model.merge_and_unload().to(torch_dtype)
    done = {
        "base_model": str(base),
        "adapter": str(lora),
        "dtype": str(torch_dtype).removeprefix("torch."),
        "dequantized": quant if quant is not None and dequant else None,
    }
    return merged, tokenizer, done


def _write(merged: Any, tokenizer: Any, template: str | None, done: dict[str, Any], target: Path) -> None:
    """Save into a temporary folder beside `target`, then move it into place."""
    with checkpoint.staged(target) as staging:
        if template is not None:
            extra = {"merged_from": done}
            checkpoint.save_pretrained_with_template(merged, tokenizer, template, staging, extra=extra)
        else:
            merged.save_pretrained(staging)
            tokenizer.save_pretrained(staging)


def _recorded_template(lora: str, base: str, tokenizer: Any) -> str | None:
    """The adapter's template, else FastChat's path fallback (adapter path, then base path)."""
    return checkpoint.template_for_checkpoint(lora, tokenizer) or checkpoint.template_for_checkpoint(
        base, tokenizer
    )


def run(args: argparse.Namespace) -> Path:
    """Merge as the parsed arguments say and return the target folder."""
    target = Path(args.target_model_path).expanduser()
    _check_paths(args.base_model_path, args.lora_path, target, args.force)
    if args.template is not None:
        from camel_chat.templates import get_template

        get_template(args.template)  # an unknown name fails before the slow part
    merged, tokenizer, done = merge(
        args.base_model_path,
        args.lora_path,
        dtype=args.dtype,
        device=args.device,
        dequant=not args.no_dequant,
        bits=args.bits,
        trust_remote_code=args.trust_remote_code,
    )
    template = args.template or _recorded_template(args.lora_path, args.base_model_path, tokenizer)
    _write(merged, tokenizer, template, done, target)
    how = f"dequantised {done['dequantized']['bits']}-bit base" if done["dequantized"] else "base"
    print(f"merged {args.lora_path} into the {how} {args.base_model_path} → {target} ({done['dtype']})")
    if template is None:
        print("note: no camel_chat template recorded; the tokenizer's own chat_template (if any) was kept")
    return target


def _command(argv: Sequence[str] | None) -> int:
    run(build_parser().parse_args(argv))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; 0 on success, 2 on bad input."""
    return run_command(_command, argv)


if __name__ == "__main__":
    raise SystemExit(main())
