"""Benchmark: our LoRA fine-tune against TRL's `SFTTrainer` on the same model, data and settings.

    python bench/train_peers.py --model-path DIR            # e.g. the imported SmolLM2-135M-Instruct
    python bench/train_peers.py --model-path DIR --steps 40 --max-length 512 --rounds 2

One run, one model, one data set, both trainers in turn (`--rounds` times, alternating who goes
first, so drifting load on a shared machine hits both alike):
  ours  `train_qlora --bits 16 --packing True` (best-fit-decreasing rows, per-sample causal
        attention), as a user runs it (in-process `run(parse_args(argv))`);
  TRL   `SFTTrainer` with its best CPU setting: `packing=True` (bfd) + `padding_free`,
        `assistant_only_loss=True` over our template's exported Jinja chat template (its
        `{% generation %}` markers are what TRL masks by).
Same LoRA rank/alpha/dropout/target modules, learning rate, constant schedule, seed, rows per
step, row length and steps. Conversations follow the seed's source mix (CAMEL : ShareGPT :
Alpaca = 229 : 100 : 52 after splitting; bench/train_packing.py's length shapes) split to
--max-length by merge.py's splitter; a held-out slice is never trained on.
Reported: trained tokens/s of each (the same instrument for both: our ThroughputCallback
counts label tokens in every training forward), the ratio ours/TRL (target >= 1.2), held-out
loss after the same steps (one function, the same samples, for both adapters; target: within
1 %), and a token-for-token comparison of the ids and masks TRL's own dataset preparation makes
against ours on the held-out samples (they must agree).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

LORA = {"r": 8, "alpha": 16, "dropout": 0.0}


def template_name(model_path: Path, given: str | None) -> str:
    """--template, else the one the checkpoint names in camel_chat.json, else chatml."""
    if given:
        return given
    meta = model_path / "camel_chat.json"
    if meta.is_file():
        return json.loads(meta.read_text()).get("template") or "chatml"
    return "chatml"


def make_pieces(tokenizer: Any, template: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Pieces of at most --max-length tokens in the seed's source mix."""
    from train_packing import MIX, conversation, one_token_words

    from camel_chat.data_preprocessing.merge import merge
    from camel_chat.data_preprocessing.tally import Tally
    from camel_chat.templates import SegmentEncoder
    from camel_chat.templates.length import LengthModel

    rng = random.Random(args.seed)
    pool = one_token_words(tokenizer)
    lengths = LengthModel(template, SegmentEncoder(tokenizer))
    total = args.pieces + args.heldout
    pieces: list[dict[str, Any]] = []
    for source, weight in MIX.items():
        want = round(total * weight / sum(MIX.values()))
        got: list[dict[str, Any]] = []
        index = 0
        while len(got) < want:
            records = [conversation(rng, pool, source, index + i) for i in range(50)]
            for record in records:  # the shapes are for 2048-token budgets: keep every pair placeable
                for turn in record["conversations"]:
                    turn["value"] = " ".join(turn["value"].split()[: args.max_length // 3])
            index += len(records)
            got += merge(records, lengths, args.max_length, args.seed, Tally("split"))
        pieces += got[:want]
    random.Random(args.seed).shuffle(pieces)
    return pieces


def lora_config(model: Any) -> Any:
    from peft import LoraConfig

    from camel_chat.train.run import lora_target_modules

    return LoraConfig(
        r=LORA["r"],
        lora_alpha=LORA["alpha"],
        lora_dropout=LORA["dropout"],
        target_modules=lora_target_modules(model),
        task_type="CAUSAL_LM",
    )


def run_ours(args: argparse.Namespace, data: Path, out: Path, template: str) -> dict[str, Any]:
    from camel_chat.train.args import parse_args
    from camel_chat.train.run import run

    argv = [
        *("--model_name_or_path", str(args.model_path), "--data_path", str(data), "--output_dir", str(out)),
        *("--bits", "16", "--packing", "True", "--template", template, "--eval_ratio", "0"),
        *(
            "--lora_r",
            str(LORA["r"]),
            "--lora_alpha",
            str(LORA["alpha"]),
            "--lora_dropout",
            str(LORA["dropout"]),
        ),
        *("--max_steps", str(args.steps), "--per_device_train_batch_size", str(args.batch_rows)),
        *("--model_max_length", str(args.max_length), "--learning_rate", str(args.lr)),
        *(
            "--lr_scheduler_type",
            "constant",
            "--warmup_steps",
            "0",
            "--weight_decay",
            "0",
            "--seed",
            str(args.seed),
        ),
        *("--gradient_checkpointing", "False", "--use_cpu", "True", "--report_to", "none"),
        *(
            "--logging_steps",
            "1",
            "--save_strategy",
            "no",
            "--disable_tqdm",
            "True",
            "--dataloader_num_workers",
            "0",
        ),
    ]
    start = time.perf_counter()
    run(parse_args(argv, qlora=True))
    seconds = time.perf_counter() - start
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return {"seconds": seconds, "history": [h for h in history if "trained_tokens_per_second" in h]}


def trl_trainer(
    args: argparse.Namespace, model: Any, tokenizer: Any, records: list, out: Path, **kw: Any
) -> Any:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    config = SFTConfig(
        output_dir=str(out),
        max_length=args.max_length,
        assistant_only_loss=True,
        per_device_train_batch_size=args.batch_rows,
        max_steps=args.steps,
        learning_rate=args.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        seed=args.seed,
        use_cpu=True,
        report_to="none",
        logging_steps=1,
        save_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        gradient_checkpointing=False,
        **kw,
    )
    return SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list([{"messages": m} for m in records]),
        processing_class=tokenizer,
        peft_config=lora_config(model) if kw.get("packing") else None,
    )


def run_trl(args: argparse.Namespace, tokenizer: Any, messages: list, out: Path) -> dict[str, Any]:
    from camel_chat.model.loader import load_model
    from camel_chat.train.run import ThroughputCallback

    model = load_model(str(args.model_path), device="cpu", dtype="float32", for_training=True)
    trainer = trl_trainer(args, model, tokenizer, messages, out, packing=True, padding_free=True)
    trainer.callback_handler.callbacks.insert(0, ThroughputCallback(trainer.model, tokenizer.pad_token_id))
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    trainer.save_model(str(out))
    history = [h for h in trainer.state.log_history if "trained_tokens_per_second" in h]
    return {"seconds": seconds, "history": history}


def trl_labels(
    args: argparse.Namespace, tokenizer: Any, messages: list, tmp: Path
) -> list[tuple[list, list]]:
    """TRL's own dataset preparation (unpacked) of `messages`: (input_ids, labels) each."""
    from camel_chat.model.loader import load_model

    model = load_model(str(args.model_path), device="cpu", dtype="float32")
    trainer = trl_trainer(args, model, tokenizer, messages, tmp / "trl-masks", packing=False)
    return [(list(row["input_ids"]), list(row["labels"])) for row in trainer.train_dataset]


def heldout_loss(args: argparse.Namespace, adapter: Path, samples: list) -> float:
    """Mean loss per trained token of base + adapter on the held-out samples (our ids/labels)."""
    import torch

    from camel_chat.model.loader import load_model

    model = load_model(str(args.model_path), device="cpu", dtype="float32", adapter_path=adapter)
    total, count = 0.0, 0
    with torch.no_grad():
        for sample in samples:
            ids = torch.tensor([sample.input_ids])
            labels = torch.tensor([sample.labels])
            n = int((labels[:, 1:] != -100).sum())
            total += float(model(input_ids=ids, labels=labels).loss) * n
            count += n
    return total / count


def throughput(history: list[dict[str, Any]]) -> float:
    timed = history[1:] or history  # the first step is warm-up
    return statistics.fmean(h["trained_tokens_per_second"] for h in timed)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-path", type=Path, required=True, help="a causal LM checkpoint folder")
    p.add_argument("--template", default=None, help="default: the checkpoint's camel_chat.json, else chatml")
    p.add_argument("--pieces", type=int, default=240, help="training pieces (240)")
    p.add_argument("--heldout", type=int, default=24, help="held-out pieces (24)")
    p.add_argument("--max-length", type=int, default=256, help="row length = split budget (256)")
    p.add_argument("--batch-rows", type=int, default=4, help="rows per step (4)")
    p.add_argument("--steps", type=int, default=12, help="optimizer steps per trainer and round (12)")
    p.add_argument("--rounds", type=int, default=1, help="rounds; who goes first alternates (1)")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)

    from transformers import AutoTokenizer

    from camel_chat.conversation import to_openai
    from camel_chat.templates import get_template, to_jinja
    from camel_chat.train.dataset import TokenizeTally, record_conversation, tokenize_conversations

    name = template_name(args.model_path, args.template)
    template = get_template(name)
    tokenizer = AutoTokenizer.from_pretrained(args.model_path)
    tokenizer.chat_template = to_jinja(template)  # the template both trainers train with
    pieces = make_pieces(tokenizer, template, args)
    train, heldout = pieces[: args.pieces], pieces[args.pieces :]
    messages = [to_openai(record_conversation(r)) for r in train]
    held_samples = tokenize_conversations(
        heldout, tokenizer, template, args.max_length, TokenizeTally("held")
    )
    print(
        f"{args.model_path} template {name}: {len(train)} training pieces, {len(heldout)} held out",
        flush=True,
    )

    results: dict[str, list[dict[str, Any]]] = {"ours": [], "trl": []}
    with tempfile.TemporaryDirectory(prefix="bench-train-peers-") as tmp_name:
        tmp = Path(tmp_name)
        data = tmp / "train.json"
        data.write_text(json.dumps(train), encoding="utf-8")
        masks = trl_labels(args, tokenizer, [to_openai(record_conversation(r)) for r in heldout], tmp)
        mismatched = sum(
            (sample.input_ids, sample.labels) != trl_pair
            for sample, trl_pair in zip(held_samples, masks, strict=True)
        )
        for r in range(args.rounds):
            order = ("ours", "trl") if r % 2 == 0 else ("trl", "ours")
            for who in order:
                out = tmp / f"{who}-{r}"
                if who == "ours":
                    res = run_ours(args, data, out, name)
                else:
                    res = run_trl(args, tokenizer, messages, out)
                res["heldout_loss"] = heldout_loss(args, out, held_samples)
                res["trained_tokens_per_second"] = throughput(res.pop("history"))
                results[who].append(res)
                print(f"round {r} {who}: {json.dumps(res)}", flush=True)

    ours = statistics.fmean(x["trained_tokens_per_second"] for x in results["ours"])
    trl = statistics.fmean(x["trained_tokens_per_second"] for x in results["trl"])
    loss_ours = statistics.fmean(x["heldout_loss"] for x in results["ours"])
    loss_trl = statistics.fmean(x["heldout_loss"] for x in results["trl"])
    summary = {
        "trained_tokens_per_second": {"ours": ours, "trl": trl, "ratio": ours / trl},
        "heldout_loss": {
            "ours": loss_ours,
            "trl": loss_trl,
            "relative_gap": (loss_ours - loss_trl) / loss_trl,
        },
        "mask_check": {"samples": len(held_samples), "mismatched": mismatched},
        "rounds": results,
    }
    print(
        f"trained tokens/s ours {ours:.1f} vs TRL {trl:.1f}: ratio {ours / trl:.3f} (target >= 1.2)\n"
        f"held-out loss ours {loss_ours:.4f} vs TRL {loss_trl:.4f}: "
        f"{100 * (loss_ours - loss_trl) / loss_trl:+.2f} % (target within 1 %)\n"
        f"ids and labels: {len(held_samples) - mismatched}/{len(held_samples)} held-out samples equal TRL's",
        flush=True,
    )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if mismatched == 0 and math.isfinite(loss_ours) else 1


if __name__ == "__main__":
    raise SystemExit(main())
