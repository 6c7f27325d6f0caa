"""Sharded training checkpoints → a standard, self-describing safetensors checkpoint.

    python -m camel_chat.train.consolidate --checkpoint OUT/checkpoint-500 --output merged \\
        [--template vicuna_v1.1] [--base BASE_MODEL] [--dtype auto|float32|bfloat16|float16] [--force]

Two layouts are read, offline, on the CPU, in one process (no GPU, no process group):

    FSDP (SHARDED_STATE_DICT)   checkpoint-N/pytorch_model_fsdp_0/  torch.distributed.checkpoint
                                files, one per rank, as the Trainer (accelerate) writes them
    DeepSpeed ZeRO-2 / ZeRO-3   checkpoint-N/latest + global_stepN/  the fp32 master weights,
                                merged with deepspeed.utils.zero_to_fp32

The output folder holds model.safetensors (sharded as save_pretrained does), config.json,
generation_config.json, the tokenizer with the template as its chat_template, and
camel_chat.json. Sharded checkpoints carry no config or tokenizer: they are taken from the
first of --base, the checkpoint folder, its parent (the run's --output_dir) and the base
model named in a camel_chat.json found there. The template is --template, else the one
recorded in a camel_chat.json found there. dtype `auto` keeps the stored dtype (fp32 master
weights); `--dtype bfloat16` halves the size. Peak memory is about one copy of the stored
weights in RAM.

Training calls `consolidate_final_save(trainer, out)` right after `trainer.save_model(out)`:
under FSDP with SHARDED_STATE_DICT the Trainer writes no weights at all (a full gather on
rank 0 is what runs peers out of memory or into a timeout), so every rank writes its shard
and the main process turns them into model.safetensors; a ZeRO-3 run whose DeepSpeed config
does not gather 16-bit weights on save is consolidated the same way.
Exit status: 0 written, 2 bad input (message on stderr).
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from camel_chat.errors import CamelChatError, run_command
from camel_chat.model import checkpoint as ckpt

#: Folder accelerate writes an FSDP SHARDED_STATE_DICT model into (FSDP_MODEL_NAME + "_0").
FSDP_MODEL_DIR = "pytorch_model_fsdp_0"
#: Prefixes that wrappers add to parameter names (activation checkpointing, FSDP1, torch.compile).
WRAPPER_PREFIXES = ("_checkpoint_wrapped_module.", "_fsdp_wrapped_module.", "_orig_mod.")
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "adapter_model.safetensors",
)


# --- reading the shards --------------------------------------------------------------------


def checkpoint_format(path: str | Path) -> str:
    """The format of a checkpoint folder, "fsdp" or "deepspeed"; `CamelChatError` for anything else."""
    folder = Path(path)
    if not folder.is_dir():
        raise CamelChatError(f"--checkpoint {folder}: no such folder")
    if (folder / FSDP_MODEL_DIR / ".metadata").is_file() or (folder / ".metadata").is_file():
        return "fsdp"
    if (folder / "latest").is_file() or any(folder.glob("global_step*/*model_states.pt")):
        return "deepspeed"
    raise CamelChatError(
        f"--checkpoint {folder}: neither an FSDP sharded checkpoint ({FSDP_MODEL_DIR}/.metadata) "
        "nor a DeepSpeed ZeRO checkpoint (latest, global_step*/)"
    )


def _clean_name(name: str) -> str:
    for prefix in WRAPPER_PREFIXES:
        name = name.replace(prefix, "")
    return name


def load_fsdp_state_dict(path: str | Path) -> dict[str, Any]:
    """The full model state dict of an FSDP sharded (DCP) checkpoint, read without a process group.

    `path` is the checkpoint-N folder or its pytorch_model_fsdp_0/ itself. Accelerate saves
    `{"model": state_dict}`, so the stored keys are "model." + parameter name.
    """
    import torch
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    folder = Path(path)
    if (folder / FSDP_MODEL_DIR / ".metadata").is_file():
        folder = folder / FSDP_MODEL_DIR
    reader = dcp.FileSystemReader(str(folder))
    metadata = reader.read_metadata()
    wanted: dict[str, Any] = {}
    for key, item in metadata.state_dict_metadata.items():
        if key.startswith("model.") and isinstance(item, TensorStorageMetadata):
            wanted[key.removeprefix("model.")] = torch.empty(item.size, dtype=item.properties.dtype)
    if not wanted:
        raise CamelChatError(f"{folder}: the sharded checkpoint holds no model tensors")
    dcp.load(
        {"model": wanted},
        storage_reader=dcp.FileSystemReader(str(folder)),
        planner=DefaultLoadPlanner(allow_partial_load=True),
        no_dist=True,
    )
    return {_clean_name(name): tensor for name, tensor in wanted.items()}


def load_deepspeed_state_dict(path: str | Path, dtype: Any = None) -> dict[str, Any]:
    """The fp32 master weights of a ZeRO-2/3 checkpoint (tag from its `latest` file), cast to `dtype`."""
    from deepspeed.utils import zero_to_fp32

    try:
        lazy = zero_to_fp32.get_fp32_state_dict_from_zero_checkpoint(str(path), lazy_mode=True)
    except (FileNotFoundError, ValueError) as exc:
        raise CamelChatError(f"--checkpoint {path}: {exc}") from None
    # Tensor by tensor: each fp32 copy is freed once it is cast.
    state_dict = zero_to_fp32.to_torch_tensor(lazy, dtype=dtype)
    return {_clean_name(name): tensor for name, tensor in state_dict.items()}


def load_state_dict(path: str | Path, dtype: Any = None) -> dict[str, Any]:
    """The full state dict of an FSDP or DeepSpeed checkpoint folder (floating tensors cast to `dtype`)."""
    if checkpoint_format(path) == "deepspeed":
        return load_deepspeed_state_dict(path, dtype)
    state_dict = load_fsdp_state_dict(path)
    if dtype is not None:
        for name, tensor in state_dict.items():
            if tensor.is_floating_point():
                state_dict[name] = tensor.to(dtype)
    return state_dict


# --- writing a standard checkpoint ---------------------------------------------------------


def _check_keys(state_dict: dict[str, Any]) -> None:
    if any(name.startswith("base_model.model.") or ".lora_" in name for name in state_dict):
        raise CamelChatError(
            "this checkpoint holds a LoRA model, and only full fine-tuning checkpoints are consolidated: "
            "merge the run's adapter_model.safetensors with python -m camel_chat.model.apply_lora"
        )


def build_model(config: Any, state_dict: dict[str, Any], *, trust_remote_code: bool = False) -> Any:
    """A causal LM built on the meta device from `config`, its weights taken from `state_dict`
    without a copy. Embeddings resized in training (a pad token added) are resized to match."""
    import torch
    from transformers import AutoModelForCausalLM

    _check_keys(state_dict)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    names = {id(p): n for n, p in model.named_parameters(remove_duplicate=False)}
    embeddings = model.get_input_embeddings()
    stored = state_dict.get(names.get(id(getattr(embeddings, "weight", None)), ""))
    if stored is not None and stored.shape[0] != embeddings.weight.shape[0]:
        model.resize_token_embeddings(stored.shape[0], mean_resizing=False)
    result = model.load_state_dict(state_dict, strict=False, assign=True)
    if result.unexpected_keys:
        shown = ", ".join(result.unexpected_keys[:5])
        raise CamelChatError(f"the checkpoint has weights this {config.model_type} model lacks: {shown}")
    model.tie_weights()
    missing = [name for name, param in model.named_parameters() if param.is_meta]
    if missing:
        raise CamelChatError(f"the checkpoint lacks weights of this model: {', '.join(missing[:5])}")
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if len(dtypes) == 1:
        model.config.dtype = dtypes.pop()
    return model.eval()


def _weights_written(folder: Path) -> bool:
    return any((folder / name).is_file() for name in WEIGHT_FILES)


def write_weights(
    state_dict: dict[str, Any],
    config: Any,
    out_dir: str | Path,
    *,
    generation_config: Any = None,
    trust_remote_code: bool = False,
) -> Any:
    """Save `state_dict` as a standard checkpoint (safetensors, config.json) in `out_dir`.

    Returns the model built around the tensors (its config and generation_config as saved).
    """
    model = build_model(config, state_dict, trust_remote_code=trust_remote_code)
    if generation_config is not None:
        model.generation_config = generation_config
    model.save_pretrained(out_dir)
    return model


# --- the command ---------------------------------------------------------------------------


def _candidate_sources(checkpoint: Path, base: str | None) -> list[str]:
    """Where config, tokenizer and template may be found, first match wins."""
    sources = [base] if base else []
    sources += [str(checkpoint), str(checkpoint.parent)]
    for folder in (checkpoint, checkpoint.parent):
        recorded = (ckpt.read_metadata(folder) or {}).get("base_model")
        if isinstance(recorded, str) and recorded not in sources:
            sources.append(recorded)
    return sources


def _is_local(source: str) -> bool:
    return Path(source).expanduser().is_dir()


def _find_config(sources: list[str], trust_remote_code: bool) -> Any:
    from transformers import AutoConfig

    for source in sources:
        if _is_local(source) and not (Path(source) / "config.json").is_file():
            continue
        try:
            return AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
        except (OSError, ValueError):
            continue
    raise CamelChatError(
        f"no config.json in {', '.join(sources)}: pass --base with the model the run started from"
    )


def _find_tokenizer(sources: list[str], trust_remote_code: bool) -> Any:
    from camel_chat.model.loader import load_tokenizer

    for source in sources:
        if _is_local(source) and not ckpt.has_tokenizer(source):
            continue
        try:
            # As training loaded it: a base tokenizer without a pad token gets the one
            # training added (the embeddings were resized for it); a saved one is unchanged.
            return load_tokenizer(source, trust_remote_code=trust_remote_code)
        except CamelChatError:
            continue
    raise CamelChatError(
        f"no tokenizer in {', '.join(sources)}: pass --base with the model the run started from"
    )


def _find_template(sources: list[str]) -> str | None:
    for source in sources:
        if _is_local(source):
            name = ckpt.read_template_name(source)
            if name is not None:
                return name
    return None


def _generation_config(sources: list[str]) -> Any:
    from transformers import GenerationConfig

    for source in sources:
        if _is_local(source) and (Path(source) / "generation_config.json").is_file():
            return GenerationConfig.from_pretrained(source)
    return None


def _extra(sources: list[str], checkpoint: Path, kind: str, base: str | None) -> dict[str, Any]:
    """camel_chat.json fields: what the run's metadata says, plus where the weights came from."""
    extra: dict[str, Any] = {"training": "full"}
    if base is not None:
        extra["base_model"] = base
    for source in sources:
        metadata = ckpt.read_metadata(source) if _is_local(source) else None
        if metadata is not None:
            extra.update({key: metadata[key] for key in ("base_model", "training") if key in metadata})
            break
    extra["consolidated_from"] = {"checkpoint": str(checkpoint), "format": kind}
    return extra


def consolidate(
    checkpoint: str | Path,
    output: str | Path,
    *,
    template: str | None = None,
    base: str | None = None,
    dtype: str = "auto",
    force: bool = False,
    trust_remote_code: bool = False,
) -> Path:
    """Turn the sharded checkpoint folder into a standard checkpoint in `output`; return it."""
    from camel_chat.model.loader import parse_dtype
    from camel_chat.templates import get_template

    source = Path(checkpoint).expanduser()
    target = Path(output).expanduser()
    kind = checkpoint_format(source)
    if target.exists() and not target.is_dir():
        raise CamelChatError(f"--output {target}: is a file")
    if target.resolve() in (source.resolve(), source.resolve().parent):
        raise CamelChatError("--output must not be the checkpoint folder or the run's output folder")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise CamelChatError(f"--output {target}: not empty; pass --force to replace it")
    sources = _candidate_sources(source, base)
    template = template or _find_template(sources)
    if template is None:
        raise CamelChatError(
            f"no camel_chat.json records the template in {', '.join(s for s in sources if _is_local(s))}: "
            "pass --template NAME (the --template the run was trained with)"
        )
    get_template(template)  # an unknown name fails before the slow part
    torch_dtype = parse_dtype(dtype)
    config = _find_config(sources, trust_remote_code)
    tokenizer = _find_tokenizer(sources, trust_remote_code)

    state_dict = load_state_dict(source, None if torch_dtype == "auto" else torch_dtype)
    with ckpt.staged(target) as staging:
        model = write_weights(
            state_dict,
            config,
            staging,
            generation_config=_generation_config(sources),
            trust_remote_code=trust_remote_code,
        )
        extra = _extra(sources, source, kind, base)
        ckpt.write_template_files(staging, tokenizer, template, model=model, extra=extra)
    return target


# --- after training --------------------------------------------------------------------------


def consolidate_final_save(trainer: Any, out_dir: str | Path) -> bool:
    """Call on every process right after `trainer.save_model(out_dir)`; True if it wrote weights.

    FSDP with SHARDED_STATE_DICT: `save_model` wrote nothing. Every rank writes its shard to
    out_dir/pytorch_model_fsdp_0 (as in a checkpoint-N), then the main process reads them back
    on the CPU, writes model.safetensors + config.json and removes the shards.
    DeepSpeed without stage3_gather_16bit_weights_on_model_save: `save_model` left a ZeRO
    checkpoint in out_dir; the main process merges it into model.safetensors.
    Anything else (the weights are already written): nothing to do.
    A LoRA model in either case raises `CamelChatError` on every process: its sharded adapter
    cannot be written reliably (under FSDP2 with activation checkpointing peft finds no
    adapter weights at all); train adapters with ZeRO-2 (configs/ds_zero2.json) or DDP.
    """
    out = Path(out_dir)
    accelerator = trainer.accelerator
    plugin = getattr(accelerator.state, "fsdp_plugin", None)
    sharded_fsdp = (
        trainer.is_fsdp_enabled and plugin is not None and "SHARDED_STATE_DICT" in str(plugin.state_dict_type)
    )
    zero_left = trainer.is_deepspeed_enabled and not _weights_written(out) and (out / "latest").is_file()
    if not (sharded_fsdp or zero_left):
        return False
    model = accelerator.unwrap_model(trainer.model)
    if hasattr(model, "peft_config"):
        raise CamelChatError(
            "LoRA with sharded checkpoints (FSDP SHARDED_STATE_DICT, or ZeRO-3 without 16-bit gather) "
            "cannot write the adapter: train LoRA/QLoRA with --deepspeed configs/ds_zero2.json or plain DDP"
        )
    if sharded_fsdp:
        from accelerate.utils import save_fsdp_model

        save_fsdp_model(plugin, accelerator, trainer.model, str(out))
        accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        state_dict = load_fsdp_state_dict(out) if sharded_fsdp else load_deepspeed_state_dict(out)
        config = model.config
        write_weights(
            state_dict,
            config,
            out,
            generation_config=getattr(model, "generation_config", None),
            trust_remote_code=bool(getattr(config, "auto_map", None)),
        )
        if sharded_fsdp:
            shutil.rmtree(out / FSDP_MODEL_DIR)
        print(f"consolidated the {'FSDP' if sharded_fsdp else 'ZeRO'} shards into {out}")
    accelerator.wait_for_everyone()
    return True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m camel_chat.train.consolidate",
        description=(
            "Turn an FSDP sharded (pytorch_model_fsdp_0/) or DeepSpeed ZeRO (global_step*/) training "
            "checkpoint into a standard safetensors checkpoint with config, tokenizer, chat template "
            "and camel_chat.json. Runs on the CPU in one process."
        ),
    )
    parser.add_argument(
        "--checkpoint", required=True, help="the checkpoint-N folder (or a run's output folder)"
    )
    parser.add_argument("--output", required=True, help="folder to write (missing or empty unless --force)")
    parser.add_argument(
        "--template",
        help="template the model was trained with (default: the one a camel_chat.json next to it records)",
    )
    parser.add_argument(
        "--base",
        help="the model the run started from (folder or Hub id), for config.json and the tokenizer "
        "(default: the checkpoint folder, then its parent)",
    )
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="dtype of the written weights (default: as stored, fp32 master weights)",
    )
    parser.add_argument("--force", action="store_true", help="replace a non-empty --output folder")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow the model's custom code")
    return parser


def _command(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    out = consolidate(
        args.checkpoint,
        args.output,
        template=args.template,
        base=args.base,
        dtype=args.dtype,
        force=args.force,
        trust_remote_code=args.trust_remote_code,
    )
    print(f"consolidated {args.checkpoint} → {out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; 0 on success, 2 on bad input."""
    return run_command(_command, argv)


if __name__ == "__main__":
    raise SystemExit(main())
