"""The one place that loads tokenizers and models: dtype, device, 8/4-bit, attention, adapters.

Training, `apply_lora`, the serving workers and the CLI all call these functions, so a
choice made here (pad token, attention kernel, quantisation settings, `trust_remote_code`
off unless asked) is the same everywhere.

    from camel_chat.model.loader import load_tokenizer, load_model
    tokenizer = load_tokenizer("path/to/model", model_max_length=2048)
    model = load_model("path/to/model", dtype="bfloat16", device="cuda", bits=4, tokenizer=tokenizer)

Errors a user can fix (a missing folder, a bad dtype, `--bits 3`, bitsandbytes not
installed) raise `CamelChatError` naming the value. torch/transformers are imported only
inside the functions.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from camel_chat.errors import CamelChatError
from camel_chat.json_input import read_json

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

#: Accepted `dtype` spellings → torch attribute names ("auto": the checkpoint's own dtype).
DTYPE_NAMES: dict[str, str] = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
}
QUANT_TYPES = ("nf4", "fp4")
#: Bits that mean "no quantisation" (the seed's QLoRA script accepts 16 and 32 too).
UNQUANTIZED_BITS = (16, 32)
#: Added only when a tokenizer has neither a pad token nor an unk token distinct from EOS.
ADDED_PAD_TOKEN = "<|pad|>"
# A Hugging Face Hub repository id ("gpt2", "org/name"), as opposed to a local path.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def default_attn_implementation() -> str:
    """`flash_attention_2` when flash-attn is installed and CUDA is available, else `sdpa`."""
    import torch

    if importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available():
        return "flash_attention_2"
    return "sdpa"


def parse_dtype(name: str) -> torch.dtype | str:
    """A torch dtype for `name` (float32/bfloat16/float16 or fp32/bf16/fp16), or "auto"."""
    import torch

    if name == "auto":
        return "auto"
    if name not in DTYPE_NAMES:
        known = ", ".join(["auto", *DTYPE_NAMES])
        raise CamelChatError(f"unknown dtype {name!r}; choose one of {known}")
    return getattr(torch, DTYPE_NAMES[name])


def checkpoint_dtype(path: str | Path) -> torch.dtype | None:
    """The dtype a local checkpoint's config.json declares (`dtype` or `torch_dtype`), if any."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return None
    try:
        raw = read_json(config)
    except CamelChatError:
        return None  # transformers reports an unreadable config.json when it loads the model
    if not isinstance(raw, dict):
        return None
    name = raw.get("dtype") or raw.get("torch_dtype")
    if not isinstance(name, str) or name not in DTYPE_NAMES:
        return None
    return parse_dtype(name)  # type: ignore[return-value]


def check_model_path(path: str | Path, what: str = "model path") -> str:
    """Return `path` as a string if it is an existing folder or looks like a Hub repo id.

    A path that is neither (`./missing`, `/abs/missing`, `a/b/c`) raises `CamelChatError`
    now, instead of transformers' confusing "repo id must be in the form ..." later.
    """
    text = str(path)
    local = Path(text).expanduser()
    if local.exists():
        if not local.is_dir():
            raise CamelChatError(f"{what} {text!r} is a file; expected a folder")
        return str(local)
    if _HUB_ID.match(text) and not text.startswith((".", "~")):
        return text
    raise CamelChatError(f"{what} {text!r} does not exist")


def ensure_pad_token(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Give `tokenizer` a pad token different from EOS; True if a token was added to the vocab.

    Pad must differ from EOS, or masking pad positions would also mask the EOS label and
    the model would never learn to stop. Order: keep a pad that differs from EOS; else use
    unk when it exists and differs from EOS (the seed's choice for LLaMA); else use, or
    add, `<|pad|>`. When a token is added the caller must resize the embeddings (see
    `resize_embeddings_for`); nothing is resized silently here.
    """
    eos = tokenizer.eos_token_id
    if tokenizer.pad_token is not None and tokenizer.pad_token_id != eos:
        return False
    if tokenizer.unk_token is not None and tokenizer.unk_token_id != eos:
        tokenizer.pad_token = tokenizer.unk_token
        return False
    if ADDED_PAD_TOKEN in tokenizer.get_vocab():
        tokenizer.pad_token = ADDED_PAD_TOKEN
        return False
    tokenizer.add_special_tokens({"pad_token": ADDED_PAD_TOKEN})
    return True


def load_tokenizer(
    path: str | Path,
    *,
    model_max_length: int | None = None,
    trust_remote_code: bool = False,
    ensure_pad: bool = True,
) -> PreTrainedTokenizerBase:
    """A fast tokenizer with right padding and a pad token ≠ EOS (see `ensure_pad_token`;
    `ensure_pad=False` leaves the special tokens exactly as saved).

    If the pad token had to be added, `len(tokenizer)` grows: pass the tokenizer to
    `load_model(..., tokenizer=...)` (or call `resize_embeddings_for`) so the embeddings fit.
    """
    from transformers import AutoTokenizer

    source = check_model_path(path, "tokenizer path")
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            source, use_fast=True, padding_side="right", trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as exc:
        raise CamelChatError(f"cannot load a tokenizer from {source!r}: {exc}") from exc
    if model_max_length is not None:
        tokenizer.model_max_length = model_max_length
    tokenizer.padding_side = "right"
    if ensure_pad:
        ensure_pad_token(tokenizer)
    return tokenizer


def resize_embeddings_for(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> bool:
    """Grow the input/output embeddings if the tokenizer has more tokens; True if resized.

    New rows are initialised to the mean of the old ones (transformers' default), which is
    deterministic, so a merge or a server resizing the same base gets the same rows.
    """
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) <= rows:
        return False
    model.resize_token_embeddings(len(tokenizer))
    return True


def bnb_config(
    bits: int, *, quant_type: str = "nf4", double_quant: bool = True, compute_dtype: torch.dtype
) -> Any:
    """The `BitsAndBytesConfig` for 4- or 8-bit loading (the seed's QLoRA settings)."""
    from transformers import BitsAndBytesConfig

    if quant_type not in QUANT_TYPES:
        raise CamelChatError(f"unknown quant_type {quant_type!r}; choose one of {', '.join(QUANT_TYPES)}")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise CamelChatError(
            f"bits={bits} needs bitsandbytes, which is not installed: pip install 'camel_chat[train]'"
        )
    return BitsAndBytesConfig(
        load_in_4bit=bits == 4,
        load_in_8bit=bits == 8,
        llm_int8_threshold=6.0,
        llm_int8_has_fp16_weight=False,
        bnb_4bit_compute_dtype=compute_dtype,
        bnb_4bit_use_double_quant=double_quant,
        bnb_4bit_quant_type=quant_type,
    )


def _resolve_device_map(device: str, device_map: Any, bits: int, for_training: bool) -> Any:
    if device_map is not None:
        return device_map
    if bits in UNQUANTIZED_BITS and (device == "cpu" or for_training):
        # Full training leaves placement to the Trainer (DDP/FSDP/DeepSpeed ZeRO-3 reject
        # a device_map); a CPU model needs none.
        return None
    return {"": device}


def _from_pretrained_kwargs(
    path: str,
    *,
    dtype: str,
    bits: int,
    quant_type: str,
    double_quant: bool,
    compute_dtype: str | None,
    attn_implementation: str | None,
) -> dict[str, Any]:
    import torch

    torch_dtype = parse_dtype(dtype)
    if bits not in (4, 8, *UNQUANTIZED_BITS):
        raise CamelChatError(f"bits must be 4, 8 or 16 (no quantisation), not {bits}")
    concrete = torch_dtype if isinstance(torch_dtype, torch.dtype) else checkpoint_dtype(path)
    if attn_implementation is None:
        attn_implementation = default_attn_implementation()
        if attn_implementation == "flash_attention_2" and concrete not in (torch.float16, torch.bfloat16):
            attn_implementation = "sdpa"  # flash-attention needs a half-precision model
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "attn_implementation": attn_implementation}
    if bits in (4, 8):
        auto = compute_dtype in (None, "auto")
        compute = (concrete or torch.float32) if auto else parse_dtype(compute_dtype)  # type: ignore[arg-type]
        kwargs["quantization_config"] = bnb_config(
            bits, quant_type=quant_type, double_quant=double_quant, compute_dtype=compute
        )
    return kwargs


def load_model(
    path: str | Path,
    *,
    dtype: str = "auto",
    device: str = "cpu",
    bits: int = 16,
    quant_type: str = "nf4",
    double_quant: bool = True,
    compute_dtype: str | None = None,
    attn_implementation: str | None = None,
    device_map: Any = None,
    max_memory: dict | None = None,
    trust_remote_code: bool = False,
    adapter_path: str | Path | None = None,
    for_training: bool = False,
    tokenizer: PreTrainedTokenizerBase | None = None,
) -> PreTrainedModel:
    """Load a causal LM (optionally 4/8-bit, optionally with a PEFT adapter on top).

    dtype: "auto" (the checkpoint's), float32, bfloat16, float16. bits 4/8 quantise with
    bitsandbytes (CPU or CUDA); compute_dtype defaults to the model dtype. device_map, when
    not given, is `{"": device}` except for an unquantised model on CPU or for training
    (the Trainer places it). `tokenizer`: resize the embeddings to fit it first (see
    `load_tokenizer`). `adapter_path`: a PEFT adapter folder, trainable if `for_training`.
    for_training turns the KV cache off (packing and gradient checkpointing need that);
    otherwise the model is put in eval mode.
    """
    from transformers import AutoModelForCausalLM

    source = check_model_path(path, "model path")
    if adapter_path is not None:
        check_adapter_path(adapter_path)  # before the slow part
    kwargs = _from_pretrained_kwargs(
        source,
        dtype=dtype,
        bits=bits,
        quant_type=quant_type,
        double_quant=double_quant,
        compute_dtype=compute_dtype,
        attn_implementation=attn_implementation,
    )
    resolved_map = _resolve_device_map(device, device_map, bits, for_training)
    if resolved_map is not None:
        kwargs["device_map"] = resolved_map
    if max_memory is not None:
        kwargs["max_memory"] = max_memory
    try:
        model = AutoModelForCausalLM.from_pretrained(source, trust_remote_code=trust_remote_code, **kwargs)
    except (OSError, ValueError, ImportError) as exc:
        # Missing/corrupt files, an unknown architecture, flash-attn asked for but absent.
        raise CamelChatError(f"cannot load a model from {source!r}: {exc}") from exc
    if tokenizer is not None:
        resize_embeddings_for(model, tokenizer)
    if adapter_path is not None:
        model = attach_adapter(model, adapter_path, trainable=for_training)
    if for_training:
        model.config.use_cache = False
    else:
        model.eval()
    return model


def attach_adapter(model: PreTrainedModel, adapter_path: str | Path, *, trainable: bool = False) -> Any:
    """Wrap `model` in a `PeftModel` holding the adapter saved in `adapter_path`."""
    from peft import PeftModel

    folder = check_adapter_path(adapter_path)
    return PeftModel.from_pretrained(model, str(folder), is_trainable=trainable)


def check_adapter_path(adapter_path: str | Path, what: str = "adapter path") -> Path:
    """The adapter folder, which must hold an adapter_config.json (a PEFT adapter)."""
    folder = Path(adapter_path).expanduser()
    if not folder.is_dir():
        raise CamelChatError(f"{what} {str(adapter_path)!r} does not exist")
    if not (folder / "adapter_config.json").is_file():
        raise CamelChatError(f"{what} {str(adapter_path)!r} has no adapter_config.json (not a PEFT adapter)")
    return folder
