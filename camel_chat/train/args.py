"""Training flags: the seed's dataclasses, `--config file.yaml`, and every check made before a model loads.

`parse_args(argv, qlora=...)` turns the command line (and an optional YAML file holding the
same fields; flags on the command line win) into a `TrainConfig`. The flags are the Hugging
Face `TrainingArguments` ones plus the seed's (`--model_name_or_path --data_path
--model_max_length --lazy_preprocess`, and for QLoRA `--bits --quant_type --double_quant
--lora_r --lora_alpha --lora_dropout --max_memory_MB`, with the seed's defaults) and ours
(`--template --packing --attn_implementation --eval_data_path ...`). Flags the seed scripts
pass that transformers 5 dropped (`--evaluation_strategy`, `--warmup_ratio`,
`--fsdp_transformer_layer_cls_to_wrap`) are accepted and mapped onto their new spelling.

`validate(config)` and `check_tokenizer(config, tokenizer)` raise `CamelChatError` naming the
flag (or file) at fault, before any model is loaded. Run the commands with `--help` to see
every flag: `python -m camel_chat.train.train --help`.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import transformers

from camel_chat.errors import CamelChatError, DataError
from camel_chat.json_input import read_json, read_text

# Keys that hold a model's context length in config.json, most common first.
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")
_FALSE = {"false", "no", "0", "none", ""}
_TRUE = {"true", "yes", "1"}


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Base model: a local folder or a Hub id (required)."}
    )
    template: str = field(
        default="vicuna_v1.1",
        metadata={"help": "Chat template the data is rendered with (vicuna_v1.1; chatml for Qwen/KAgent)."},
    )
    attn_implementation: str | None = field(
        default=None,
        metadata={
            "help": "flash_attention_2, sdpa or eager (default: flash_attention_2 on a GPU with flash-attn)."
        },
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "Run code shipped with the model."})


@dataclass
class DataArguments:
    data_path: str | None = field(
        default=None, metadata={"help": "JSON array (or .jsonl) of ShareGPT conversations (required)."}
    )
    eval_data_path: str | None = field(
        default=None,
        metadata={"help": "Evaluation conversations; without it, a seeded split of --data_path."},
    )
    lazy_preprocess: bool = field(
        default=False,
        metadata={"help": "Accepted for compatibility: data is always tokenized once, up front, and cached."},
    )
    eval_ratio: float = field(
        default=0.02,
        metadata={"help": "Share of --data_path held out for evaluation (the seed's 98/2 split)."},
    )
    packing: bool = field(
        default=False,
        metadata={"help": "Pack samples into full rows (position ids restart, attention stays per sample)."},
    )
    debug_render: bool = field(
        default=False, metadata={"help": "Print one rendered training sample with its trained spans marked."}
    )
    tokenized_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Where tokenized data is cached (default: <output_dir>/tokenized_cache)."},
    )
    max_samples: int | None = field(
        default=None,
        metadata={"help": "Use only the first N conversations of --data_path (seed QLoRA flag)."},
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Evaluate on at most N conversations (seed QLoRA flag)."}
    )


@dataclass
class TrainingArguments(transformers.TrainingArguments):
    """Hugging Face `TrainingArguments` plus the seed's additions and old flag spellings."""

    cache_dir: str | None = field(default=None, metadata={"help": "Hub download cache for the base model."})
    optim: str = field(default="adamw_torch", metadata={"help": "Optimizer (transformers name)."})
    model_max_length: int = field(
        default=512,
        metadata={"help": "Maximum tokens per sample (longer ones are truncated) and per packed row."},
    )
    evaluation_strategy: str | None = field(
        default=None, metadata={"help": "Old spelling of --eval_strategy (the seed scripts pass it)."}
    )
    warmup_ratio: float | None = field(
        default=None, metadata={"help": "Warmup as a share of all steps (old flag; sets --warmup_steps)."}
    )
    fsdp_transformer_layer_cls_to_wrap: str | None = field(
        default=None, metadata={"help": "Old flag; sets fsdp_config's transformer_layer_cls_to_wrap."}
    )

    def __post_init__(self) -> None:
        if self.evaluation_strategy is not None:
            self.eval_strategy = self.evaluation_strategy
        if self.warmup_ratio is not None:
            if not 0 <= self.warmup_ratio < 1:
                raise CamelChatError(f"--warmup_ratio {self.warmup_ratio}: must be in [0, 1)")
            self.warmup_steps = self.warmup_ratio  # a float in [0, 1) is a ratio in transformers 5
        if self.fsdp_transformer_layer_cls_to_wrap is not None:
            fsdp_config = self.fsdp_config
            if isinstance(fsdp_config, str) and fsdp_config.startswith("{"):
                fsdp_config = json.loads(fsdp_config)
            if fsdp_config is not None and not isinstance(fsdp_config, dict):
                raise CamelChatError(
                    "--fsdp_transformer_layer_cls_to_wrap: give it inside --fsdp_config instead"
                )
            layers = [c.strip() for c in self.fsdp_transformer_layer_cls_to_wrap.split(",") if c.strip()]
            self.fsdp_config = {**(fsdp_config or {}), "transformer_layer_cls_to_wrap": layers}
        if self.activation_checkpointing_kwargs is None and self.gradient_checkpointing_kwargs is None:
            # Non-reentrant checkpointing works with frozen embeddings (LoRA) and needs no input-grad hook.
            self.activation_checkpointing_kwargs = {"use_reentrant": False}
        super().__post_init__()


@dataclass
class QLoraTrainingArguments(TrainingArguments):
    """The QLoRA command's training defaults (seed `train_qlora.py`): grad-norm 0.3, checkpointing on."""

    max_grad_norm: float = field(default=0.3, metadata={"help": "Gradient clipping norm."})

    def __post_init__(self) -> None:
        if self.activation_checkpointing is None and self.gradient_checkpointing is None:
            self.activation_checkpointing = True
        super().__post_init__()


@dataclass
class LoraArguments:
    bits: int = field(
        default=4, metadata={"help": "Base weights: 4 or 8 (bitsandbytes), 16 or 32 (plain LoRA)."}
    )
    quant_type: str = field(default="nf4", metadata={"help": "4-bit data type: nf4 or fp4."})
    double_quant: bool = field(default=True, metadata={"help": "Quantize the quantization constants too."})
    lora_r: int = field(default=64, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator (alpha / r)."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA input."})
    max_memory_MB: int = field(default=80000, metadata={"help": "Per-GPU memory cap for device_map='auto'."})
    checkpoint_path: str | None = field(
        default=None,
        metadata={"help": "Checkpoint to resume from with --resume_from_checkpoint True (seed flag)."},
    )
    load_weights: bool = field(
        default=True,
        metadata={
            "help": "Accepted for compatibility: resuming always restores the adapter with its optimizer."
        },
    )


@dataclass
class TrainConfig:
    """Everything one training run needs; `lora` is None for full fine-tuning."""

    model: ModelArguments
    data: DataArguments
    training: TrainingArguments
    lora: LoraArguments | None = None


def _dataclasses(qlora: bool) -> list[type]:
    training = QLoraTrainingArguments if qlora else TrainingArguments
    return [ModelArguments, DataArguments, training, *([LoraArguments] if qlora else [])]


def build_parser(qlora: bool) -> transformers.HfArgumentParser:
    """The `HfArgumentParser` for `train` (qlora=False) or `train_qlora`, with `--config`."""
    prog = "camel_chat.train.train_qlora" if qlora else "camel_chat.train.train"
    what = "LoRA / QLoRA fine-tuning" if qlora else "Full fine-tuning"
    parser = transformers.HfArgumentParser(
        _dataclasses(qlora),
        prog=f"python -m {prog}",
        description=f"{what} of a causal LM on ShareGPT-style conversations with the Hugging Face Trainer.",
    )
    parser.add_argument(
        "--config",
        metavar="FILE.yaml",
        help="YAML mapping of these flags (without --); command-line flags win",
    )
    return parser


def _read_config(path: str, parser: argparse.ArgumentParser) -> dict[str, Any]:
    import yaml

    file = Path(path)
    if not file.is_file():
        raise CamelChatError(f"--config {path}: no such file")
    try:
        values = yaml.safe_load(read_text(file)) or {}
    except DataError as exc:
        raise CamelChatError(f"--config {exc}") from None
    except yaml.YAMLError as exc:  # PyYAML's message spans lines; keep the one that says where
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise CamelChatError(f"--config {path}: not valid YAML{at}: {problem}") from None
    except RecursionError:  # PyYAML composes nested nodes recursively
        raise CamelChatError(f"--config {path}: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer over 4300 digits
        raise CamelChatError(f"--config {path}: not valid YAML: {exc}") from None
    if not isinstance(values, dict):
        raise CamelChatError(f"--config {path}: must be a mapping of flag names to values")
    known = {action.dest for action in parser._actions}
    unknown = sorted(str(key) for key in values if key not in known or key in ("help", "config"))
    if unknown:
        raise CamelChatError(f"--config {path}: unknown field(s): {', '.join(unknown)}")
    actions = {action.dest: action for action in parser._actions}
    # Fields whose type takes a list may be given one in YAML; TrainingArguments also takes a
    # list for report_to and fsdp, though transformers declares those fields as `str`.
    lists = {"report_to", "fsdp"} | {
        f.name
        for dc in getattr(parser, "dataclass_types", ())
        for f in dataclasses.fields(dc)
        if "list" in str(f.type).lower()
    }
    return {
        key: _coerce(actions[key], value, f"--config {path}: {key}", key in lists)
        for key, value in values.items()
    }


def _coerce(action: argparse.Action, value: Any, where: str, list_ok: bool = False) -> Any:
    """`value` converted as argparse converts the same flag on the command line.

    Defaults bypass argparse's type conversion, so without this a YAML list where a number
    belongs would reach `TrainingArguments` and fail deep inside it, with a traceback.
    """
    if value is None:
        if action.default is not None:  # only a flag that may be unset takes YAML's null
            raise CamelChatError(f"{where}: needs a value (the YAML has null)")
        return None
    multiple = action.nargs in ("+", "*") or (list_ok and isinstance(value, list))
    if isinstance(value, dict):
        value = json.dumps(value)  # the dict-valued flags (fsdp_config & co) take JSON text
    items = value if isinstance(value, list) else [value]
    if isinstance(value, list) and not multiple:
        raise CamelChatError(f"{where}: expected one value, got a list")
    converted = []
    for item in items:
        if isinstance(item, (dict, list)):
            raise CamelChatError(f"{where}: expected a plain value, got {type(item).__name__}")
        try:
            out = action.type(str(item)) if callable(action.type) else str(item)
        except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
            raise CamelChatError(f"{where}: invalid value {str(item)[:80]!r} ({exc})") from None
        if action.choices is not None and out not in action.choices:
            raise CamelChatError(f"{where}: {str(item)[:80]!r} is not one of {list(action.choices)}")
        converted.append(out)
    return converted if multiple else converted[0]


def parse_args(argv: Sequence[str] | None, *, qlora: bool) -> TrainConfig:
    """Parse flags (after the `--config` file's values, which they override) into a `TrainConfig`."""
    parser = build_parser(qlora)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    if known.config:
        parser.set_defaults(**_read_config(known.config, parser))
    try:
        parsed = parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)
    except ValueError as exc:  # TrainingArguments.__post_init__ rejecting a combination of flags
        raise CamelChatError(str(exc)) from None
    objs = [obj for obj in parsed if dataclasses.is_dataclass(obj)]
    model, data, training, *rest = objs
    return TrainConfig(model=model, data=data, training=training, lora=rest[0] if rest else None)


# --- validation before anything heavy is loaded ------------------------------------------------


def validate(config: TrainConfig) -> None:
    """Check files, template, lengths and optional dependencies; raise `CamelChatError` naming the flag."""
    from camel_chat.templates import get_template

    model, data, training, lora = config.model, config.data, config.training, config.lora
    if not model.model_name_or_path:
        raise CamelChatError("--model_name_or_path is required")
    if not data.data_path:
        raise CamelChatError("--data_path is required")
    for flag, path in (("--data_path", data.data_path), ("--eval_data_path", data.eval_data_path)):
        if path is not None and not Path(path).is_file():
            raise CamelChatError(f"{flag} {path}: no such file")
    try:
        get_template(model.template)
    except CamelChatError as exc:
        raise CamelChatError(f"--template: {exc}") from None
    if not 0 <= data.eval_ratio < 1:
        raise CamelChatError(f"--eval_ratio {data.eval_ratio}: must be in [0, 1)")
    if training.model_max_length < 2:
        raise CamelChatError(f"--model_max_length {training.model_max_length}: must be at least 2")
    _check_context(model, training)
    _check_attention(model.attn_implementation)
    if model.attn_implementation == "flash_attention_2" and not (training.bf16 or training.fp16):
        raise CamelChatError("--attn_implementation flash_attention_2 needs --bf16 True or --fp16 True")
    if lora is not None:
        _check_lora(lora)
    _check_report_to(training.report_to)
    resume_checkpoint(config)  # a bad --resume_from_checkpoint fails now, not after tokenizing


def _model_config(model: ModelArguments, cache_dir: str | None) -> tuple[dict[str, Any], str]:
    """config.json of the base model (read as JSON; nothing is built) and where it came from."""
    name = str(model.model_name_or_path)
    local = Path(name)
    if local.is_dir():
        file = local / "config.json"
        if not file.is_file():
            raise CamelChatError(f"--model_name_or_path {name}: no config.json in this folder")
    elif local.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise CamelChatError(f"--model_name_or_path {name}: no such model folder")
    else:
        from huggingface_hub import hf_hub_download

        try:
            file = Path(hf_hub_download(name, "config.json", cache_dir=cache_dir))
        except Exception as exc:  # offline, gated, missing repo: all the user's to fix
            raise CamelChatError(
                f"--model_name_or_path {name}: not a local folder and its config could not be fetched "
                f"from the Hub ({type(exc).__name__}: {exc})"
            ) from None
    try:
        return read_json(file), str(file)
    except CamelChatError as exc:
        raise CamelChatError(f"--model_name_or_path {name}: unreadable config: {exc}") from None


def model_context_length(config_json: dict[str, Any]) -> tuple[str, int] | None:
    """The (key, value) giving the model's context length in a config.json mapping, if any."""
    for section in (config_json, config_json.get("text_config") or {}):
        for key in _CONTEXT_KEYS:
            value = section.get(key)
            if isinstance(value, int) and value > 0:
                return key, value
    return None


def _check_context(model: ModelArguments, training: TrainingArguments) -> None:
    config_json, where = _model_config(model, training.cache_dir)
    found = model_context_length(config_json)
    if found is not None and training.model_max_length > found[1]:
        key, value = found
        raise CamelChatError(
            f"--model_max_length {training.model_max_length} exceeds the model's context "
            f"({key}={value} in {where})"
        )


def _check_attention(attn: str | None) -> None:
    if attn is None:
        return
    if attn == "flash_attention_2":
        if importlib.util.find_spec("flash_attn") is None:
            raise CamelChatError(
                "--attn_implementation flash_attention_2: flash-attn is not installed "
                "(pip install 'camel_chat[flash]', or use sdpa)"
            )
        import torch

        if not torch.cuda.is_available():
            raise CamelChatError("--attn_implementation flash_attention_2 needs a CUDA GPU; use sdpa on CPU")
    elif attn not in ("sdpa", "eager", "flex_attention", "flash_attention_3"):
        raise CamelChatError(
            f"--attn_implementation {attn}: choose flash_attention_2, sdpa, eager or flex_attention"
        )


def _check_lora(lora: LoraArguments) -> None:
    if lora.bits not in (4, 8, 16, 32):
        raise CamelChatError(f"--bits {lora.bits}: choose 4 or 8 (QLoRA), or 16 / 32 (LoRA on a plain base)")
    if lora.bits in (4, 8) and importlib.util.find_spec("bitsandbytes") is None:
        raise CamelChatError(
            f"--bits {lora.bits} needs bitsandbytes, which is not installed: pip install 'camel_chat[train]' "
            "(or pass --bits 16 for LoRA without quantization)"
        )
    if lora.quant_type not in ("nf4", "fp4"):
        raise CamelChatError(f"--quant_type {lora.quant_type}: choose nf4 or fp4")
    if lora.lora_r < 1:
        raise CamelChatError(f"--lora_r {lora.lora_r}: must be at least 1")
    if not 0 <= lora.lora_dropout < 1:
        raise CamelChatError(f"--lora_dropout {lora.lora_dropout}: must be in [0, 1)")
    if importlib.util.find_spec("peft") is None:
        raise CamelChatError("LoRA needs peft, which is not installed: pip install 'camel_chat[train]'")


def _check_report_to(report_to: Any) -> None:
    targets = [report_to] if isinstance(report_to, str) else list(report_to or [])
    if ("tensorboard" in targets or "all" in targets) and not any(
        importlib.util.find_spec(name) is not None for name in ("tensorboard", "tensorboardX")
    ):
        raise CamelChatError("--report_to tensorboard: install tensorboard first (pip install tensorboard)")


def resume_checkpoint(config: TrainConfig) -> str | None:
    """The checkpoint to resume from: --resume_from_checkpoint PATH, or True/False, else the latest
    `checkpoint-*` in --output_dir (the seed's automatic resume); None starts from scratch."""
    from transformers.trainer_utils import get_last_checkpoint

    training = config.training
    wanted = training.resume_from_checkpoint
    explicit = config.lora.checkpoint_path if config.lora is not None else None
    output_dir = Path(training.output_dir)
    latest = get_last_checkpoint(str(output_dir)) if output_dir.is_dir() else None
    if wanted is None:
        return latest
    if str(wanted).lower() in _FALSE:
        return None
    if str(wanted).lower() in _TRUE:
        if explicit is not None:
            wanted = explicit
        elif latest is None:
            raise CamelChatError(
                f"--resume_from_checkpoint True: no checkpoint-* folder in --output_dir {output_dir}"
            )
        else:
            return latest
    if not Path(wanted).is_dir():
        raise CamelChatError(f"--resume_from_checkpoint {wanted}: no such checkpoint folder")
    return str(wanted)


def check_tokenizer(config: TrainConfig, tokenizer: Any) -> None:
    """The tokenizer must encode the template: its BOS/EOS exist, its text has no <unk>, and an
    end of turn written as a special token (`<|im_end|>`) is one token of this vocabulary."""
    from camel_chat.templates import SegmentEncoder, SpecialTokens, get_template
    from camel_chat.train.dataset import check_template

    template = get_template(config.model.template)
    check_template(SegmentEncoder(tokenizer), template)
    end = SpecialTokens.of(tokenizer).fill(template.end_of_turn).strip()
    if (
        end.startswith("<")
        and end.endswith(">")
        and tokenizer.convert_tokens_to_ids(end)
        in (
            None,
            tokenizer.unk_token_id,
        )
    ):
        raise CamelChatError(
            f"--template {template.name}: end of turn {end!r} is not a token of this tokenizer, so the "
            "model could not learn to stop (pick the template the model was trained with, or add the token)"
        )
