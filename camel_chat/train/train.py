"""`train`: full fine-tuning of a causal LM on ShareGPT-style conversations (the seed's train.py).

    python -m camel_chat.train.train --model_name_or_path M --data_path dataset.json \
        --output_dir out --bf16 True --num_train_epochs 3 --model_max_length 2048 [--packing]
    torchrun --nproc_per_node 4 -m camel_chat.train.train ...     # or by path:
    torchrun --nproc_per_node 4 camel_chat/train/train.py ...

Every Hugging Face `TrainingArguments` flag works, plus the flags in `camel_chat.train.args`
(`--help` lists them) and `--config file.yaml`. The flow lives in `camel_chat.train.run`.
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

    return run_main(argv, qlora=False)


if __name__ == "__main__":
    raise SystemExit(main())
