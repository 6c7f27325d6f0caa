"""Held-out loss: the mean cross-entropy of a model (or base + LoRA adapter) on the trained tokens
of a conversation file, exactly as training would count them.

    python -m camel_chat.evaluation.heldout_loss --model-path M --data heldout.json --template T
        [--lora-path ADAPTER] [--max-length 512] [--dtype float32]

Conversations are rendered and labelled by the one renderer (`camel_chat.templates`), the
same way `train`/`train_qlora` label them: only assistant replies (and their end-of-turn)
count. The figure is token-weighted: total negative log-likelihood over all trained tokens
divided by their number. Prints one JSON line {"loss", "tokens", "conversations"}.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camel_chat.errors import CamelChatError, run_command


@dataclass(frozen=True)
class HeldoutLoss:
    loss: float
    tokens: int
    conversations: int


def encode_file(path: str | Path, tokenizer: Any, template: str, max_length: int) -> list[Any]:
    """The file's conversations as `Encoded` (ids + labels); dropped records are an error."""
    from camel_chat.templates import get_template
    from camel_chat.train.dataset import TokenizeTally, load_conversations, tokenize_conversations

    tally = TokenizeTally(name="held-out")
    samples = tokenize_conversations(
        load_conversations(path), tokenizer, get_template(template), max_length, tally, progress=False
    )
    if tally.total_dropped or tally.truncated:
        raise CamelChatError(
            f"{path}: {tally.total_dropped} dropped, {tally.truncated} truncated conversations"
        )
    return samples


def loss_of(model: Any, samples: Sequence[Any]) -> HeldoutLoss:
    """Token-weighted mean NLL of `model` over the trained tokens of `samples` (one at a time)."""
    import torch

    total, count = 0.0, 0
    device = model.get_input_embeddings().weight.device
    with torch.inference_mode():
        for sample in samples:
            ids = torch.tensor([sample.input_ids], device=device)
            labels = torch.tensor([sample.labels], device=device)
            logits = model(input_ids=ids, use_cache=False).logits[0, :-1].float()
            target = labels[0, 1:]
            nll = torch.nn.functional.cross_entropy(logits, target, ignore_index=-100, reduction="sum")
            total += float(nll)
            count += int((target != -100).sum())
    if count == 0:
        raise CamelChatError("no trained tokens to score")
    return HeldoutLoss(total / count, count, len(samples))


def heldout_loss(
    model_path: str | Path,
    data: str | Path,
    template: str,
    *,
    lora_path: str | Path | None = None,
    max_length: int = 1024,
    dtype: str = "float32",
) -> HeldoutLoss:
    """Load the model (and adapter) the one way and score `data`."""
    from camel_chat.model.loader import load_model, load_tokenizer

    tokenizer = load_tokenizer(lora_path or model_path)
    samples = encode_file(data, tokenizer, template, max_length)
    model = load_model(model_path, dtype=dtype, adapter_path=lora_path, tokenizer=tokenizer)
    return loss_of(model, samples)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m camel_chat.evaluation.heldout_loss",
        description="Mean loss of a model on the assistant tokens of a ShareGPT-style conversation file.",
    )
    p.add_argument("--model-path", required=True, help="checkpoint folder (the base, with --lora-path)")
    p.add_argument("--lora-path", default=None, help="a LoRA adapter folder to put on the base")
    p.add_argument("--data", required=True, help="conversation file (JSON list or JSONL)")
    p.add_argument("--template", required=True, help="template used to render and label the conversations")
    p.add_argument("--max-length", type=int, default=1024, help="longer conversations are an error")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    return p


def _command(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    result = heldout_loss(
        args.model_path,
        args.data,
        args.template,
        lora_path=args.lora_path,
        max_length=args.max_length,
        dtype=args.dtype,
    )
    print(
        json.dumps(
            {"loss": round(result.loss, 4), "tokens": result.tokens, "conversations": result.conversations}
        )
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(_command, argv)


if __name__ == "__main__":
    raise SystemExit(main())
