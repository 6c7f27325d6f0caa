"""`train_qlora`: LoRA on a 4-bit (QLoRA, the default), 8-bit or 16-bit base (the seed's train_qlora.py).

    python -m camel_chat.train.train_qlora --model_name_or_path M --data_path dataset.json \
        --output_dir out --bf16 True --bits 4 --lora_r 64 --lora_alpha 16 --lora_dropout 0.05
    torchrun --nproc_per_node 4 -m camel_chat.train.train_qlora ...   # or camel_chat/train/train_qlora.py

Seed defaults: --bits 4 --quant_type nf4 --double_quant --lora_r 64 --lora_alpha 16
--lora_dropout 0.0 --max_memory_MB 80000 --max_grad_norm 0.3, gradient checkpointing on.
The adapter (with the tokenizer, its chat template and camel_chat.json) is saved in
--output_dir; merge it with `python -m camel_chat.model.apply_lora`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

if __name__ == "__main__" and not __package__:
    # Run by path: put the repository root, not this folder, at the front of the import path.
    sys.path[0] = str(Path(__file__).resolve().parents[2])


def main(argv: Sequence[str] | None = None) -> int:
    from camel_chat.train.run import main as run_main

    return run_main(argv, qlora=True)


if __name__ == "__main__":
    raise SystemExit(main())
