"""`camel-chat <command> [args]`: one front for the seed commands (they keep their own names).

    camel-chat download   ≡ python -m camel_chat.data_preprocessing.download_datasets
    camel-chat convert    ≡ python -m camel_chat.data_preprocessing.convert_datasets_to_conversation_format
    camel-chat merge      ≡ python merge.py
    camel-chat tiny       ≡ python -m camel_chat.model.tiny
    camel-chat train      ≡ python -m camel_chat.train.train          (train-qlora likewise)
    camel-chat apply-lora ≡ python -m camel_chat.model.apply_lora

Commands are imported only when called, so `camel-chat --help` stays fast.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

COMMANDS: dict[str, tuple[str, str]] = {
    "download": ("camel_chat.data_preprocessing.download_datasets", "download datasets from the hub"),
    "convert": (
        "camel_chat.data_preprocessing.convert_datasets_to_conversation_format",
        "convert downloaded datasets to <name>_conv.json",
    ),
    "merge": ("camel_chat.data_preprocessing.merge", "merge and split conversations to the token budget"),
    "tiny": ("camel_chat.model.tiny", "build a tiny local tokenizer and random model"),
    "train": ("camel_chat.train.train", "full fine-tuning on the Trainer (also under torchrun)"),
    "train-qlora": ("camel_chat.train.train_qlora", "LoRA / QLoRA fine-tuning (also under torchrun)"),
    "apply-lora": ("camel_chat.model.apply_lora", "merge a LoRA adapter into its base model"),
    "consolidate": (
        "camel_chat.train.consolidate",
        "turn a sharded FSDP/DeepSpeed checkpoint into a standard one",
    ),
    "controller": ("camel_chat.serve.controller", "run the FastChat-protocol controller"),
    "worker": ("camel_chat.serve.model_worker", "run a transformers model worker"),
    "api": ("camel_chat.serve.openai_api_server", "run the OpenAI-compatible API server"),
    "chat": ("camel_chat.serve.cli", "chat in the terminal (a local model or any OpenAI endpoint)"),
    "web": ("camel_chat.serve.gradio_web_server", "run the Gradio web UI"),
    "test-message": ("camel_chat.serve.test_message", "send one message to a served model"),
}


def usage() -> str:
    lines = ["usage: camel-chat <command> [args]", "", "commands:"]
    lines += [f"  {name:<10} {help_text}" for name, (_, help_text) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0
    if args[0] not in COMMANDS:
        print(f"error: unknown command {args[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[args[0]][0])
    return int(module.main(args[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
