"""`import_gguf`: a GGUF file (llama.cpp's format) becomes a standard, self-describing checkpoint.

    python -m camel_chat.model.import_gguf FILE.gguf --out DIR [--template NAME]
        [--dtype float32|bfloat16|float16] [--temperature T] [--top-p P] [--force]
    (also spelled --gguf FILE --output DIR)

transformers reads GGUF (`from_pretrained(folder, gguf_file=...)`, with the `gguf` package) and
dequantises every tensor, but the model it returns is flagged as quantized and refuses
`save_pretrained`. So the state dict is loaded, strictly (every key must match), into a plain
model built from the same config without the quantization entry, and that is saved:

    model.safetensors + config.json    the dense weights (dtype --dtype, default float32)
    tokenizer files                    the GGUF's tokenizer; chat_template = the GGUF's own, or
                                       with --template NAME our template's Jinja (checkpoint.py)
    generation_config.json             EOS = the template's end-of-turn token(s) + the tokenizer's
                                       EOS; sampling defaults from --temperature/--top-p
    camel_chat.json                    template name (or null), "source": the GGUF's name and sha256

Bad input gets one line naming it and exit 2: a missing file, a file that is not GGUF (magic),
a truncated or damaged GGUF, an architecture transformers cannot read, a non-empty --out without
--force. Everything is written in a folder beside --out and renamed into place at the end, so
a failure leaves nothing half-written.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from camel_chat.errors import CamelChatError, run_command
from camel_chat.model import checkpoint

GGUF_MAGIC = b"GGUF"
DTYPES = ("float32", "bfloat16", "float16")
# what transformers' GGUF loading raises for a damaged file (found by tests/fuzz/test_fuzz_gguf.py)
_LOAD_ERRORS = (
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    ZeroDivisionError,
    OverflowError,
    NotImplementedError,
)


class GgufError(CamelChatError):
    """The GGUF file cannot be imported (names the file and the reason)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")


def check_gguf(path: Path) -> dict[str, Any]:
    """Read the GGUF's header and tensor table; returns {"architecture", "tensors", "types"}.

    Raises `GgufError` for a missing file, a wrong magic, a truncated or damaged file, or an
    architecture transformers' GGUF loader does not know.
    """
    if not path.is_file():
        raise GgufError(path, "no such file")
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        raise GgufError(path, f"not a GGUF file (starts with {magic!r}, expected {GGUF_MAGIC!r})")
    try:
        import gguf
    except ImportError as exc:
        raise CamelChatError("reading GGUF needs the `gguf` package: pip install gguf") from exc
    try:
        reader = gguf.GGUFReader(str(path))
    except (ValueError, IndexError, OSError, KeyError) as exc:
        raise GgufError(path, f"truncated or damaged GGUF ({type(exc).__name__}: {exc})") from exc
    end = max((t.data_offset + int(t.n_bytes) for t in reader.tensors), default=0)
    size = path.stat().st_size
    if end > size:
        raise GgufError(path, f"truncated GGUF: its tensors need {end} bytes, the file has {size}")
    field = reader.fields.get("general.architecture")
    if field is None:
        raise GgufError(path, "no general.architecture in the GGUF header")
    try:
        architecture = bytes(field.parts[field.data[0]]).decode("utf-8")
    except (UnicodeDecodeError, IndexError) as exc:
        raise GgufError(path, f"general.architecture is not a UTF-8 string ({exc})") from exc
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    if architecture not in GGUF_SUPPORTED_ARCHITECTURES:
        known = ", ".join(a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ("general", "tokenizer"))
        raise GgufError(
            path, f"architecture {architecture!r} is not readable by transformers (known: {known})"
        )
    types = sorted({t.tensor_type.name for t in reader.tensors})
    return {"architecture": architecture, "tensors": len(reader.tensors), "types": types}


def check_block_count(path: Path, architecture: str) -> None:
    """The header's layer count must be the number of `blk.N` layers the tensors hold.

    transformers builds the model from the header before reading any tensor, so a damaged
    count (2**31 layers) would build modules until memory runs out; the tensor table, bounded
    by the file's size, is what the count is checked against.
    """
    import gguf

    reader = gguf.GGUFReader(str(path))  # already read whole by check_gguf: cannot fail here
    field = reader.fields.get(f"{architecture}.block_count")
    if field is None:
        return
    declared = int(field.parts[field.data[0]][0])
    layers = {int(n) for n in re.findall(r"^blk\.(\d+)\.", "\n".join(t.name for t in reader.tensors), re.M)}
    if declared != len(layers) or (layers and max(layers) != declared - 1):
        raise GgufError(
            path,
            f"{architecture}.block_count is {declared} but the tensors hold {len(layers)} layers (blk.N)",
        )


def load_gguf(path: Path) -> tuple[Any, Any]:
    """(dequantised model as transformers loads it, tokenizer) from the GGUF at `path`."""
    from huggingface_hub.errors import StrictDataclassError
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    folder, name = str(path.parent), path.name
    verbosity = hf_logging.get_verbosity()
    # transformers' multi-line load report would bury the one error line said below
    hf_logging.set_verbosity_error()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model, info = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=name, dtype="float32", output_loading_info=True
        )
    except RuntimeError as exc:
        if "ignore_mismatched_sizes" in str(exc):  # its "details" are in the report silenced above
            raise GgufError(
                path, "tensor shapes do not match the header (embedding, feed-forward, head or vocab sizes)"
            ) from exc
        raise GgufError(path, f"transformers cannot load it ({type(exc).__name__}: {exc})") from exc
    except (*_LOAD_ERRORS, StrictDataclassError) as exc:
        # a quantisation type transformers cannot dequantise, or a damaged header value (a head
        # count of 0, a layer norm epsilon of 0, a hidden size not divisible by the heads, ...)
        # that transformers' GGUF reader and config checks trip over with these
        raise GgufError(path, f"transformers cannot load it ({type(exc).__name__}: {exc})") from exc
    finally:
        hf_logging.set_verbosity(verbosity)
    # transformers initialises what the file lacks at random and only warns; an import that
    # saved those random weights as the model would be a silent corruption.
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise GgufError(path, f"tensors missing for {model.config.model_type}: {shown}")
    return model, tokenizer


def to_plain_model(gguf_model: Any, dtype: str = "float32") -> Any:
    """A plain (saveable) model of the same class and config holding `gguf_model`'s weights.

    Every key of the state dict must match (load_state_dict strict): a GGUF whose tensors do
    not cover the architecture fails here rather than saving random weights.
    """
    import torch
    from transformers import AutoModelForCausalLM

    values = gguf_model.config.to_dict()
    values.pop("quantization_config", None)
    values.pop("_name_or_path", None)
    values.pop("dtype", None)
    config = type(gguf_model.config).from_dict(values)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    result = plain.load_state_dict(gguf_model.state_dict(), strict=True)
    if result.missing_keys or result.unexpected_keys:  # strict raises first; kept for clarity
        raise CamelChatError(f"state dict mismatch: {result}")
    plain.tie_weights()
    plain.generation_config = gguf_model.generation_config
    return plain.to(getattr(torch, dtype)).eval()


def _write_checkpoint(
    model: Any,
    tokenizer: Any,
    out: Path,
    *,
    template: str | None,
    sampling: dict[str, float],
    source: dict[str, Any],
) -> None:
    import json

    context = getattr(model.config, "max_position_embeddings", None)
    if isinstance(context, int):
        tokenizer.model_max_length = context  # not transformers' "unlimited" placeholder
    for key, value in sampling.items():
        setattr(model.generation_config, key, value)
    if sampling:
        model.generation_config.do_sample = True  # a temperature is only valid with sampling
    model.save_pretrained(out)
    extra = {"source": source}
    if template is not None:
        checkpoint.write_template_files(out, tokenizer, template, model=model, extra=extra)
        return
    # The GGUF's own chat template stays; serving renders with it (template null in metadata).
    tokenizer.save_pretrained(out)
    generation = model.generation_config
    eos = generation.eos_token_id
    eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
    if tokenizer.eos_token_id is not None:
        eos_ids.append(tokenizer.eos_token_id)
    generation.eos_token_id = list(dict.fromkeys(eos_ids))
    generation.save_pretrained(out)
    metadata = checkpoint.build_metadata(None, model, extra)  # type: ignore[arg-type]
    text = json.dumps(metadata, indent=2, ensure_ascii=False) + "\n"
    (out / checkpoint.METADATA_FILE).write_text(text, encoding="utf-8")


def check_target(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise CamelChatError(f"--out {str(out)!r} is a file")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise CamelChatError(f"--out {str(out)!r} is not empty; pass --force to replace it")


def import_gguf(
    gguf_path: str | Path,
    out: str | Path,
    *,
    template: str | None = None,
    dtype: str = "float32",
    sampling: dict[str, float] | None = None,
    force: bool = False,
    source: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Import the GGUF into the checkpoint folder `out` (staged beside it, then renamed)."""
    path, target = Path(gguf_path).expanduser(), Path(out).expanduser()
    if dtype not in DTYPES:
        raise CamelChatError(f"--dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    if template is not None:
        from camel_chat.templates import get_template

        get_template(template)  # an unknown name fails before the slow part
    check_target(target, force)
    header = check_gguf(path)
    log(f"{path.name}: {header['architecture']}, {header['tensors']} tensors ({', '.join(header['types'])})")
    described = dict(source or {})
    described.setdefault("gguf", path.name)
    if "sha256" not in described:
        from camel_chat.model.download_model import sha256_of

        described["sha256"] = sha256_of(path)
    described["architecture"] = header["architecture"]
    check_block_count(path, header["architecture"])
    gguf_model, tokenizer = load_gguf(path)
    plain = to_plain_model(gguf_model, dtype)
    del gguf_model
    with checkpoint.staged(target) as staging:
        _write_checkpoint(
            plain, tokenizer, staging, template=template, sampling=dict(sampling or {}), source=described
        )
    log(f"imported {path} → {target} ({dtype}, template {template or 'from the GGUF'})")
    return target


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m camel_chat.model.import_gguf",
        description="Convert a GGUF file into a safetensors checkpoint with tokenizer, chat template, "
        "generation_config.json and camel_chat.json.",
    )
    p.add_argument("file", nargs="?", type=Path, help="the .gguf file")
    p.add_argument("--gguf", type=Path, default=None, help="the .gguf file (instead of the positional)")
    p.add_argument("--out", "--output", dest="out", type=Path, required=True, help="checkpoint folder")
    p.add_argument(
        "--template",
        default=None,
        help="camel_chat template to record and write as chat_template (default: keep the GGUF's own)",
    )
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="dtype of the saved weights")
    p.add_argument("--temperature", type=float, default=None, help="default temperature to record")
    p.add_argument("--top-p", type=float, default=None, help="default top_p to record")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out")
    return p


def _command(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    file = args.gguf or args.file
    if file is None or (args.gguf and args.file):
        parser.error("give the GGUF file once: FILE or --gguf FILE")
    sampling = {k: v for k, v in (("temperature", args.temperature), ("top_p", args.top_p)) if v is not None}
    import_gguf(file, args.out, template=args.template, dtype=args.dtype, sampling=sampling, force=args.force)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(_command, argv)


if __name__ == "__main__":
    raise SystemExit(main())
