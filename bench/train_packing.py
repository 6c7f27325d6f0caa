"""Benchmark: useful tokens per second with packing, against padding and against the ceiling.

    python bench/train_packing.py                              # default: 1-2 min on 2 CPU cores
    python bench/train_packing.py --pieces 20000 --rounds 30   # more data and steps: steadier figures
    python bench/train_packing.py --hidden-size 512            # a wider, less attention-bound model
    python bench/train_packing.py --attn eager --batch-rows 2 --max-length 1024
    python bench/train_packing.py --packed-attn mask           # packed rows with the dense block mask

One run, one model (the tiny random LLaMA of camel_chat.model.tiny, float32, use_cache=False,
AdamW), one data set. The data follows the seed's mix: 229K CAMEL, 100K ShareGPT and 52K
Alpaca samples *after* splitting to 2048 tokens (spec §1.6: the released counts are pieces).
Conversations are generated per source with the turn lengths in `conversation()` (LLaMA-token
figures: CAMEL role-play chats, i.e. AI Society + Code, 75K of its 185K raw conversations, and
single-turn science Q&A; multi-turn ShareGPT; short Alpaca), split to --max-length with the
real splitter (merge.py's), drawn in the 229 : 100 : 52 proportions, and tokenized with the real
training path (tokenize_conversations, template vicuna_v1.1). Then, interleaved step by step,
full training steps (collate + forward + backward + optimizer) on rows of --max-length:
  packed:       PackedDataset rows + PackedCollator with the attention --packing trains with
                (camel_chat.train.varlen_attention.packing_attn_implementation: varlen_sdpa for
                --attn sdpa/eager, position ids only, per-sample causal sdpa); --packed-attn mask
                gives the earlier path instead (--attn with the (B, 1, L, L) block-diagonal mask);
  padding (a):  one sample per row padded to --max-length: the seed's approach (--attn);
  ceiling (b):  the same samples' tokens cut into rows made entirely of real tokens, plain
                causal attention (no mask, no position restarts; --attn): the most this model can do.
It prints useful (real, non-pad) tokens/s of each, the ratios packed/(b) and packed/(a) (over
all steps; the median of the per-round ratios and the ratio of the best steps, both of which
resist other load on a shared machine), and the share of real tokens per batch.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from camel_chat.data_preprocessing.merge import merge
from camel_chat.data_preprocessing.tally import Tally
from camel_chat.model.tiny import build_tiny_model, build_tiny_tokenizer
from camel_chat.templates import IGNORE_INDEX, Encoded, SegmentEncoder, get_template
from camel_chat.templates.length import LengthModel
from camel_chat.train.dataset import SupervisedDataset, TokenizeTally, tokenize_conversations
from camel_chat.train.packing import PackedCollator, PackedDataset, PaddingCollator, uses_varlen_attention
from camel_chat.train.varlen_attention import packing_attn_implementation, register_varlen_sdpa

TEMPLATE = "vicuna_v1.1"
MIX = {"CAMEL": 229, "ShareGPT": 100, "Alpaca": 52}  # thousands of samples after splitting (spec §1.6)
CAMEL_ROLE_PLAY = 75 / 185  # AI Society + Code chats among the raw CAMEL conversations
WORDS = (
    "the be to of and in that have it for not on with he as you do at this but his by from they we say "
    "her she or an will my one all would there their what so up out if about who get which go me when "
    "make can like time no just him know take people into year your good some could them see other than "
    "then now look only come its over think also back after use two how our work first well way even new "
    "want because any these give day most us is are was were been has had did said very much more many "
    "where why hello world please thank help question answer explain write story code data model chat "
    "user assistant system task solution instruction input output yes sure here example list number name "
    "water city country function return value true false"
).split()


# --- data with the seed's length mix -------------------------------------------------------------


def one_token_words(tokenizer: Any) -> list[str]:
    """Words that are one token with their leading space, so n words make n tokens."""
    pool = [w for w in WORDS if len(tokenizer(" " + w, add_special_tokens=False)["input_ids"]) == 1]
    if len(pool) < 20:
        raise SystemExit("the tokenizer has too few one-token words for this benchmark")
    return pool


def lognormal(rng: random.Random, median: float, sigma: float, lo: int, hi: int) -> int:
    return int(min(hi, max(lo, rng.lognormvariate(math.log(median), sigma))))


def text(rng: random.Random, pool: list[str], n: int) -> str:
    return " ".join(rng.choices(pool, k=n)).capitalize() + "."


def conversation(rng: random.Random, pool: list[str], source: str, index: int) -> dict[str, Any]:
    """Turn lengths in tokens, shaped like each source (LLaMA-tokenizer figures)."""
    if source == "CAMEL" and rng.random() < CAMEL_ROLE_PLAY:  # long instruction/solution chats
        pairs = [(lognormal(rng, 50, 0.5, 10, 300), lognormal(rng, 200, 0.6, 30, 900)) for _ in range(20)]
        pairs = pairs[: rng.randint(6, 20)]
    elif source == "CAMEL":  # biology/chemistry/physics/math: one question, one long answer
        pairs = [(lognormal(rng, 60, 0.5, 10, 300), lognormal(rng, 350, 0.5, 60, 1200))]
    elif source == "ShareGPT":
        n_pairs = min(30, 1 + int(rng.expovariate(1 / 3.0)))
        pairs = [
            (lognormal(rng, 40, 1.2, 2, 1500), lognormal(rng, 230, 0.8, 5, 1500)) for _ in range(n_pairs)
        ]
    else:  # Alpaca: instruction (+ input), short output
        pairs = [(lognormal(rng, 25, 0.6, 4, 300), lognormal(rng, 60, 0.9, 2, 600))]
    turns = []
    for user, reply in pairs:
        turns += [
            {"from": "human", "value": text(rng, pool, user)},
            {"from": "gpt", "value": text(rng, pool, reply)},
        ]
    return {"id": f"{source}/{index}", "conversations": turns}


def source_pieces(
    source: str, count: int, args: argparse.Namespace, tokenizer: Any, rng: random.Random
) -> tuple[list[dict[str, Any]], int]:
    """`count` pieces (≤ max_length tokens) of one source, and the conversations they came from."""
    pool = one_token_words(tokenizer)
    model = LengthModel(get_template(TEMPLATE), SegmentEncoder(tokenizer))
    pieces: list[dict[str, Any]] = []
    conversations = 0
    while len(pieces) < count:
        records = [conversation(rng, pool, source, conversations + i) for i in range(200)]
        conversations += len(records)
        pieces += merge(records, model, args.max_length, args.seed, Tally("split"))
    return pieces[:count], conversations


def make_samples(args: argparse.Namespace, tokenizer: Any) -> list[Encoded]:
    rng = random.Random(args.seed)
    template = get_template(TEMPLATE)
    samples: list[Encoded] = []
    total = sum(MIX.values())
    for source, weight in MIX.items():
        count = round(args.pieces * weight / total)
        pieces, conversations = source_pieces(source, count, args, tokenizer, rng)
        tally = TokenizeTally(f"tokenize {source}")
        encoded = tokenize_conversations(pieces, tokenizer, template, args.max_length, tally, progress=False)
        if tally.kept != len(pieces):
            print(tally.summary())
        mean = statistics.fmean(len(s.input_ids) for s in encoded)
        print(
            f"{source:<9} {len(encoded):>6} samples from {conversations:>6} conversations, mean {mean:,.0f}"
        )
        samples += encoded
    lengths = sorted(len(s.input_ids) for s in samples)
    p10, p50, p90 = (lengths[int(q * (len(lengths) - 1))] for q in (0.1, 0.5, 0.9))
    tokens = sum(lengths)
    print(
        f"all       {len(samples):>6} samples, {tokens:,} tokens, mean {tokens / len(samples):,.0f}, "
        f"p10/p50/p90 {p10}/{p50}/{p90}, trained {100 * sum(s.num_trainable for s in samples) / tokens:.1f} %"
    )
    return samples


# --- the three ways of filling rows --------------------------------------------------------------


def packed_batches(samples: Sequence[Encoded], args: argparse.Namespace, rng: random.Random) -> list:
    dataset = PackedDataset(samples, args.max_length)
    print(
        f"packing: {len(samples)} samples → {len(dataset)} rows, {100 * dataset.fill_ratio:.2f} % real tokens"
    )
    order = list(range(len(dataset)))
    rng.shuffle(order)  # the Trainer's sampler shuffles the rows
    rows = [dataset[i] for i in order]
    return [rows[i : i + args.batch_rows] for i in range(0, len(rows) - args.batch_rows + 1, args.batch_rows)]


def padded_batches(samples: Sequence[Encoded], args: argparse.Namespace, rng: random.Random) -> list:
    items = list(SupervisedDataset(samples))
    rng.shuffle(items)
    real = sum(len(s.input_ids) for s in samples) / (len(samples) * args.max_length)
    print(f"padding (a): {len(samples)} rows, {100 * real:.2f} % real tokens")
    return [
        items[i : i + args.batch_rows] for i in range(0, len(items) - args.batch_rows + 1, args.batch_rows)
    ]


def ceiling_batches(samples: Sequence[Encoded], args: argparse.Namespace, rng: random.Random) -> list:
    order = list(range(len(samples)))
    rng.shuffle(order)
    ids = [t for i in order for t in samples[i].input_ids]
    labels = [t for i in order for t in samples[i].labels]
    n, size = len(ids) // args.max_length, args.max_length
    rows = [
        {"input_ids": ids[r * size : (r + 1) * size], "labels": labels[r * size : (r + 1) * size]}
        for r in range(n)
    ]
    print(f"ceiling (b): {n} rows, 100.00 % real tokens")
    return [rows[i : i + args.batch_rows] for i in range(0, len(rows) - args.batch_rows + 1, args.batch_rows)]


def ceiling_collate(features: Sequence[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
    return {k: torch.tensor([f[k] for f in features]) for k in ("input_ids", "labels")}


# --- timing ----------------------------------------------------------------------------------


class Mode:
    """One way of batching, its batches, and what it has done so far."""

    def __init__(self, name: str, batches: list, collate: Callable, pad_id: int, attn: str, how: str) -> None:
        self.name, self.batches, self.collate, self.pad_id = name, batches, collate, pad_id
        self.attn, self.how = attn, how  # the attention implementation, and what it is given
        self.next = 0
        self.seconds = 0.0
        self.steps = self.positions = self.real = self.trained = 0
        self.real_shares: list[float] = []
        self.step_rates: list[float] = []  # useful tokens/s of each step
        self.rounds: list[tuple[float, int]] = []  # (seconds, real tokens) of each round

    def run_round(self, model: Any, optimizer: Any, steps: int) -> None:
        seconds, real = self.seconds, self.real
        for _ in range(steps):
            self.step(model, optimizer, timed=True)
        self.rounds.append((self.seconds - seconds, self.real - real))

    def step(self, model: Any, optimizer: Any, timed: bool) -> None:
        features = self.batches[self.next % len(self.batches)]
        self.next += 1
        if model.config._attn_implementation != self.attn:
            model.set_attn_implementation(self.attn)  # untimed: the modes share one model
        start = time.perf_counter()
        batch = self.collate(features)
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        elapsed = time.perf_counter() - start
        if timed:
            real = sum(len(f["input_ids"]) for f in features)
            self.seconds += elapsed
            self.steps += 1
            self.positions += batch["input_ids"].numel()
            self.real += real
            self.trained += int((batch["labels"] != IGNORE_INDEX).sum())
            self.real_shares.append(real / batch["input_ids"].numel())
            self.step_rates.append(real / elapsed)


def build_model(args: argparse.Namespace, tokenizer: Any) -> Any:
    model = build_tiny_model("llama", tokenizer, seed=args.seed, max_position_embeddings=args.max_length)
    if args.hidden_size or args.layers:
        from transformers import LlamaForCausalLM

        config = model.config
        config.hidden_size = args.hidden_size or config.hidden_size
        config.intermediate_size = 2 * config.hidden_size
        config.num_hidden_layers = args.layers or config.num_hidden_layers
        torch.manual_seed(args.seed)
        model = LlamaForCausalLM(config)
    model.config.use_cache = False
    return model.train()


def report(modes: list[Mode], args: argparse.Namespace) -> None:
    print("\nattention:")
    for m in modes:
        print(f"  {m.name:<12} {m.attn} ({m.how})")
    print(
        f"\n{'mode':<12} {'steps':>5} {'s/step':>7} {'positions/s':>12} {'useful tok/s':>13} "
        f"{'real %':>7} {'trained tok/s':>14}"
    )
    rate = {}
    for m in modes:
        rate[m.name] = m.real / m.seconds
        print(
            f"{m.name:<12} {m.steps:>5} {m.seconds / m.steps:>7.3f} {m.positions / m.seconds:>12,.0f} "
            f"{rate[m.name]:>13,.0f} {100 * m.real / m.positions:>7.2f} {m.trained / m.seconds:>14,.0f}"
        )
    packed, padding, ceiling = modes
    print()
    for name, other, target in (("ceiling (b)", ceiling, "≥ 0.9"), ("padding (a)", padding, "> 3")):
        ratios = [
            (pr / ps) / (o_r / o_s) for (ps, pr), (o_s, o_r) in zip(packed.rounds, other.rounds, strict=True)
        ]
        best = max(packed.step_rates) / max(other.step_rates)
        print(
            f"packed / {name}: {rate['packed'] / rate[name]:.3f} over all steps; "
            f"median of rounds {statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f}); "
            f"best steps {best:.3f}   [target {target}]"
        )
    print(
        f"real tokens per packed batch: mean {100 * statistics.fmean(packed.real_shares):.2f} %, "
        f"min {100 * min(packed.real_shares):.2f} %   (target ≥ 95 %)"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pieces", type=int, default=4000, help="samples (split pieces) in the data set (4000)"
    )
    parser.add_argument("--max-length", type=int, default=2048, help="model_max_length = row length (2048)")
    parser.add_argument("--batch-rows", type=int, default=4, help="rows per step (per-device batch size, 4)")
    parser.add_argument("--steps", type=int, default=1, help="timed steps per mode per round (1)")
    parser.add_argument("--rounds", type=int, default=12, help="rounds; modes take turns in each (12)")
    parser.add_argument(
        "--attn", default="sdpa", choices=["sdpa", "eager"], help="attention implementation (sdpa)"
    )
    parser.add_argument(
        "--packed-attn",
        default="auto",
        choices=["auto", "mask"],
        help="packed mode: auto = what --packing trains with (varlen_sdpa); mask = --attn + block mask",
    )
    parser.add_argument(
        "--hidden-size", type=int, default=0, help="override the tiny model's hidden size (64)"
    )
    parser.add_argument("--layers", type=int, default=0, help="override the tiny model's layer count (2)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    began = time.perf_counter()
    tokenizer = build_tiny_tokenizer(seed=args.seed)
    samples = make_samples(args, tokenizer)
    rng = random.Random(args.seed)
    model = build_model(args, tokenizer)
    params = sum(p.numel() for p in model.parameters())
    packed_attn = packing_attn_implementation(args.attn) if args.packed_attn == "auto" else args.attn
    register_varlen_sdpa()  # as camel_chat.train.run does before building the model
    print(
        f"model: tiny LLaMA, {params:,} parameters, hidden {model.config.hidden_size}, "
        f"{model.config.num_hidden_layers} layers, float32, attn {args.attn} (packed: {packed_attn}), "
        f"use_cache=False; torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    pad = tokenizer.pad_token_id
    packed_how = (
        "position ids only, attention per sample"
        if uses_varlen_attention(packed_attn)
        else "position ids + (B, 1, L, L) block-diagonal mask"
    )
    modes = [
        Mode(
            "packed",
            packed_batches(samples, args, rng),
            PackedCollator(pad, packed_attn, torch.float32),
            pad,
            packed_attn,
            packed_how,
        ),
        Mode(
            "padding (a)",
            padded_batches(samples, args, rng),
            PaddingCollator(pad, pad_to_length=args.max_length),
            pad,
            args.attn,
            "2-D padding mask",
        ),
        Mode(
            "ceiling (b)",
            ceiling_batches(samples, args, rng),
            ceiling_collate,
            pad,
            args.attn,
            "plain causal, no mask",
        ),
    ]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for mode in modes:  # warm-up: first-call allocations and kernel selection
        mode.step(model, optimizer, timed=False)
    for _ in range(args.rounds):
        for mode in modes:
            mode.run_round(model, optimizer, args.steps)
    report(modes, args)
    print(f"\ntotal wall time {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
