"""The training flow shared by `train` (full fine-tuning) and `train_qlora` (LoRA / QLoRA).

    from camel_chat.train.args import parse_args
    from camel_chat.train.run import run
    out = run(parse_args(["--model_name_or_path", "m", "--data_path", "d.json", ...], qlora=False))

Steps, in this order (the order is the point):
1. `args.validate`: files, template, lengths, optional packages; nothing is loaded yet.
2. The tokenizer (`model.loader.load_tokenizer`) and `args.check_tokenizer`.
3. Tokenization, once, on the main process first (the others wait, then hit the cache),
   with the kept/dropped/truncated counts printed and, with --debug_render, one sample shown.
4. The model (`model.loader.load_model`); LoRA/QLoRA through peft: k-bit preparation, LoRA on
   every linear layer except the output head, norms in fp32.
5. A stock `transformers.Trainer` over our datasets and collators (padding or packing), resumed
   by the Trainer itself from the latest `checkpoint-*` in --output_dir (weights or adapter,
   optimizer, scheduler, RNG, data position), logging loss, lr, tokens/s and, on CUDA, MFU.
6. The final, self-describing checkpoint (`model.checkpoint`): weights or adapter, tokenizer
   whose chat_template is the training template, generation_config, camel_chat.json.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, set_seed

from camel_chat.errors import CamelChatError, DataError, run_command
from camel_chat.templates import IGNORE_INDEX
from camel_chat.train.args import TrainConfig, check_tokenizer, parse_args, resume_checkpoint, validate

# Dense bf16 peak FLOP/s of common training GPUs, for MFU (matched against the device name).
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 125e12, "L4": 121e12}


@dataclass
class Data:
    train: Any
    eval: Any | None
    collator: Any


# --- data ----------------------------------------------------------------------------------


def _tokenize(config: TrainConfig, tokenizer: Any) -> tuple[list, list]:
    from camel_chat.train.dataset import load_conversations, split_train_eval, tokenized_dataset

    data, training = config.data, config.training
    cache_dir = Path(data.tokenized_cache_dir or Path(training.output_dir) / "tokenized_cache")
    main = training.process_index == 0

    def tokenize(path: str, records: list) -> list:
        samples, _ = tokenized_dataset(
            path,
            records,
            tokenizer,
            config.model.template,
            training.model_max_length,
            cache_dir,
            progress=main,
            verbose=main,
        )
        return samples

    records = load_conversations(data.data_path)
    if data.max_samples is not None:
        records = records[: data.max_samples]
    if data.eval_data_path is not None:
        train_records, eval_records = records, load_conversations(data.eval_data_path)
    else:
        train_records, eval_records = split_train_eval(records, data.eval_ratio, seed=0)
    if data.max_eval_samples is not None:
        eval_records = eval_records[: data.max_eval_samples]
    if main:
        print(f"#train {len(train_records)}, #eval {len(eval_records)} conversations")
    train = tokenize(str(data.data_path), train_records)
    evals: list = []
    if eval_records:
        try:
            evals = tokenize(str(data.eval_data_path or data.data_path), eval_records)
        except DataError:  # every held-out record was dropped; the counts were printed
            if main:
                print("no evaluation conversation left after tokenizing; evaluation is off")
    return train, evals


def prepare_data(config: TrainConfig, tokenizer: Any) -> Data:
    """Tokenized datasets and the collator; tokenization runs on the main process first."""
    from camel_chat.train.dataset import SupervisedDataset, describe_sample
    from camel_chat.train.packing import PackedCollator, PackedDataset, PaddingCollator

    data, training = config.data, config.training
    if data.lazy_preprocess and training.process_index == 0:
        print("--lazy_preprocess: data is tokenized once up front and cached; the flag changes nothing")
    with training.main_process_first(desc="tokenizing the training data"):
        train, evals = _tokenize(config, tokenizer)
    if data.debug_render and training.process_index == 0:
        print(describe_sample(train[0], tokenizer))
    if training.eval_strategy != "no" and not evals:
        raise CamelChatError(
            f"--eval_strategy {training.eval_strategy.value} needs evaluation data: "
            "give --eval_data_path or a non-zero --eval_ratio"
        )
    if data.packing:
        length, attn = training.model_max_length, _attn(config)
        if training.process_index == 0:
            print(f"--packing: attention {attn} (samples attend only to themselves)")
        # Varlen attention (varlen_sdpa, flash) gets position ids only; any other gets a block
        # mask, in fp32, which suits every model dtype: sdpa accepts a float mask with
        # half-precision queries, while a half-precision mask with fp32 queries is an error.
        collator = PackedCollator(tokenizer.pad_token_id, attn_implementation=attn, dtype=torch.float32)
        return Data(PackedDataset(train, length), PackedDataset(evals, length) if evals else None, collator)
    eval_set = SupervisedDataset(evals) if evals else None
    return Data(SupervisedDataset(train), eval_set, PaddingCollator(tokenizer.pad_token_id))


# --- model ---------------------------------------------------------------------------------


def _attn(config: TrainConfig) -> str:
    """--attn_implementation, else flash-attention where installed on a GPU and training in half
    precision (flash kernels take only fp16/bf16 activations), else sdpa. With --packing, sdpa
    and eager become varlen sdpa (camel_chat.train.varlen_attention): attention per sample
    without the L×L block mask; flash-attention (already varlen) and others are kept."""
    from camel_chat.model.loader import default_attn_implementation
    from camel_chat.train.varlen_attention import packing_attn_implementation

    attn = config.model.attn_implementation
    if not attn:
        attn = default_attn_implementation()
        if attn == "flash_attention_2" and not (config.training.bf16 or config.training.fp16):
            attn = "sdpa"
    return packing_attn_implementation(attn) if config.data.packing else attn


def _half_dtype(training: Any, fp16: str) -> str:
    return "bfloat16" if training.bf16 else fp16 if training.fp16 else "float32"


def _quantized_device_map(config: TrainConfig) -> tuple[Any, dict | None]:
    """Where a 4/8-bit base goes: the process's own GPU under torchrun, all GPUs (capped at
    --max_memory_MB) for a single process, the CPU otherwise (the seed's placement)."""
    training, lora = config.training, config.lora
    if training.use_cpu or not torch.cuda.is_available():
        return {"": "cpu"}, None
    if training.world_size > 1:
        return {"": training.local_process_index}, None
    assert lora is not None
    memory = {i: f"{lora.max_memory_MB}MB" for i in range(torch.cuda.device_count())}
    return "auto", memory


def build_model(config: TrainConfig, tokenizer: Any) -> Any:
    """The model to train: full weights in fp32 (mixed precision comes from --bf16/--fp16), or
    a frozen (optionally 4/8-bit) base with LoRA adapters."""
    from camel_chat.model.loader import load_model
    from camel_chat.train.varlen_attention import VARLEN_SDPA, register_varlen_sdpa

    model_args, training, lora = config.model, config.training, config.lora
    attn = _attn(config)
    if attn == VARLEN_SDPA:
        register_varlen_sdpa()  # with transformers' AttentionInterface, before the model is built
    common = {
        "attn_implementation": attn,
        "trust_remote_code": model_args.trust_remote_code,
        "for_training": True,
        "tokenizer": tokenizer,
    }
    if lora is None:
        return load_model(model_args.model_name_or_path, dtype="float32", **common)
    device_map = max_memory = None
    if lora.bits in (4, 8):
        device_map, max_memory = _quantized_device_map(config)
    model = load_model(
        model_args.model_name_or_path,
        dtype=_half_dtype(training, fp16="float32"),  # the seed: fp16 runs keep an fp32 base
        bits=lora.bits,
        quant_type=lora.quant_type,
        double_quant=lora.double_quant,
        compute_dtype=_half_dtype(training, fp16="float16"),
        device_map=device_map,
        max_memory=max_memory,
        **common,
    )
    return add_lora(model, config)


def lora_target_modules(model: Any) -> list[str]:
    """Names of every linear layer (plain or bitsandbytes) except the output head."""
    output = model.get_output_embeddings()
    names = set()
    for name, module in model.named_modules():
        linear = isinstance(module, torch.nn.Linear) or type(module).__name__ in (
            "Linear4bit",
            "Linear8bitLt",
        )
        if linear and module is not output:
            names.add(name.rsplit(".", 1)[-1])
    return sorted(names)


def add_lora(model: Any, config: TrainConfig) -> Any:
    """Wrap `model` in LoRA adapters as the seed's QLoRA does, with norms kept in fp32."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    lora, training = config.lora, config.training
    assert lora is not None
    if lora.bits in (4, 8):
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=bool(training.gradient_checkpointing),
            gradient_checkpointing_kwargs=training.gradient_checkpointing_kwargs,
        )
    peft_config = LoraConfig(
        r=lora.lora_r,
        lora_alpha=lora.lora_alpha,
        lora_dropout=lora.lora_dropout,
        target_modules=lora_target_modules(model),
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, peft_config)
    for name, module in model.named_modules():
        if "norm" in name.rsplit(".", 1)[-1].lower():
            module.to(torch.float32)
    if training.process_index == 0:
        model.print_trainable_parameters()
    return model


# --- logging -------------------------------------------------------------------------------


def _flops_per_token(model: Any, tokens_per_row: float) -> float:
    """Model FLOPs per token (6N + attention, the PaLM convention); 4-bit params count double."""
    n = 0
    for p in model.parameters():
        n += p.numel() * (2 if type(p).__name__ == "Params4bit" else 1)
    n -= model.get_input_embeddings().weight.numel()
    config = getattr(model, "config", None)
    layers = getattr(config, "num_hidden_layers", 0) or 0
    hidden = getattr(config, "hidden_size", 0) or 0
    return 6 * n + 12 * layers * hidden * tokens_per_row


def _peak_flops() -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((flops for key, flops in PEAK_FLOPS.items() if key in name), None)


class ThroughputCallback(TrainerCallback):
    """Adds `tokens_per_second` (non-pad input tokens), `trained_tokens_per_second` (tokens with
    a label) and, on a known GPU, `mfu` to each training log, summed over all processes.

    A forward pre-hook on the model counts the tokens of each training micro-batch (it sees
    exactly what the Trainer feeds the model); put this callback before the reporters
    (`trainer.callback_handler.callbacks.insert(0, ...)`) so they log its numbers too.
    """

    def __init__(self, model: Any, pad_token_id: int | None) -> None:
        self.model = model
        self.pad_token_id = pad_token_id
        self.counts = torch.zeros(3, dtype=torch.float64)  # real tokens, trained tokens, rows
        self.since = time.perf_counter()
        self.peak = _peak_flops()
        model.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module: Any, args: tuple, kwargs: dict) -> None:
        if not module.training:
            return
        labels, ids = kwargs.get("labels"), kwargs.get("input_ids")
        if labels is None or ids is None:
            return
        mask = kwargs.get("attention_mask")
        real = mask.sum() if mask is not None and mask.dim() == 2 else (ids != self.pad_token_id).sum()
        trained = (labels != IGNORE_INDEX).sum()
        self.counts += torch.stack([real, trained, torch.tensor(ids.shape[0])]).double().cpu()

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.counts.zero_()
        self.since = time.perf_counter()

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
        if logs is None or "loss" not in logs:
            return
        counts = self.counts.to(args.device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(counts)
        real, trained, rows = counts.tolist()
        now = time.perf_counter()
        elapsed = max(now - self.since, 1e-9)
        extra = {
            "tokens_per_second": real / elapsed,
            "trained_tokens_per_second": trained / elapsed,
        }
        if self.peak is not None and rows:
            flops = _flops_per_token(self.model, real / rows)
            extra["mfu"] = real / elapsed * flops / (self.peak * args.world_size)
        logs.update(extra)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(extra)
        self.counts.zero_()
        self.since = now


# --- the run -------------------------------------------------------------------------------


def build_trainer(
    config: TrainConfig, model: Any, tokenizer: Any, data: Data, callbacks: Sequence[TrainerCallback] = ()
) -> Trainer:
    """A stock Trainer over our data; our batches already hold exactly the model's inputs."""
    training = config.training
    training.remove_unused_columns = False
    training.label_names = ["labels"]
    trainer = Trainer(
        model=model,
        args=training,
        train_dataset=data.train,
        eval_dataset=data.eval,
        data_collator=data.collator,
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )
    trainer.callback_handler.callbacks.insert(0, ThroughputCallback(model, tokenizer.pad_token_id))
    return trainer


def _metadata(config: TrainConfig, model: Any) -> dict[str, Any]:
    extra: dict[str, Any] = {"base_model": str(config.model.model_name_or_path)}
    lora = config.lora
    if lora is None:
        extra["training"] = "full"
        return extra
    extra["training"] = "qlora" if lora.bits in (4, 8) else "lora"
    peft_config = model.peft_config["default"]
    extra["lora"] = {
        "r": lora.lora_r,
        "alpha": lora.lora_alpha,
        "dropout": lora.lora_dropout,
        "target_modules": sorted(peft_config.target_modules),
        "bits": lora.bits,
    }
    return extra


def save_final(trainer: Trainer, config: TrainConfig, tokenizer: Any) -> Path:
    """Write the final checkpoint into --output_dir (sharded weights gathered by the Trainer)."""
    from camel_chat.model.checkpoint import save_pretrained_with_template, write_template_files
    from camel_chat.train.consolidate import consolidate_final_save

    out = Path(config.training.output_dir)
    model = trainer.accelerator.unwrap_model(trainer.model)
    extra = _metadata(config, model)
    if trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled:
        trainer.save_model(str(out))  # gathers the shards; writes on the main process only
        # FSDP SHARDED_STATE_DICT (and ZeRO-3 without 16-bit gathering) leave no weights behind:
        # each rank writes its shard and rank 0 turns them into model.safetensors.
        consolidate_final_save(trainer, out)
        if trainer.is_world_process_zero():
            write_template_files(out, tokenizer, config.model.template, model=model, extra=extra)
    elif trainer.is_world_process_zero():
        save_pretrained_with_template(model, tokenizer, config.model.template, out, extra=extra)
    trainer.accelerator.wait_for_everyone()
    return out


def run(config: TrainConfig, callbacks: Sequence[TrainerCallback] = ()) -> Path:
    """Train as configured (resuming when --output_dir holds checkpoints); return the output folder."""
    from camel_chat.model.loader import load_tokenizer

    validate(config)
    training = config.training
    tokenizer = load_tokenizer(
        str(config.model.model_name_or_path),
        model_max_length=training.model_max_length,
        trust_remote_code=config.model.trust_remote_code,
    )
    check_tokenizer(config, tokenizer)
    resume = resume_checkpoint(config)
    data = prepare_data(config, tokenizer)
    set_seed(training.seed)  # LoRA's random init (and any other model init) is reproducible
    model = build_model(config, tokenizer)
    trainer = build_trainer(config, model, tokenizer, data, callbacks)
    if resume is not None and training.process_index == 0:
        print(f"resuming from {resume}")
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_state()
    out = save_final(trainer, config, tokenizer)
    if training.process_index == 0:
        print(f"saved {out}")
    return out


def _run_argv(argv: Sequence[str] | None, qlora: bool) -> int:
    run(parse_args(argv, qlora=qlora))
    return 0


def main(argv: Sequence[str] | None = None, *, qlora: bool = False) -> int:
    """Entry point of both commands: a `CamelChatError` becomes one line on stderr and exit 2."""
    if argv is None:
        argv = sys.argv[1:]
    return run_command(lambda a: _run_argv(a, qlora), argv)
