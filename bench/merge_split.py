"""Benchmark: merge.py's exact split against the seed's algorithm and the tokenization floor.

    python bench/merge_split.py [--conversations 20000] [--max-length 2048] [--seed 0]

On the same ≥20,000 CAMEL-like conversations and the real LLaMA-family tokenizer
(tools/real_tokenizers.py), in one run:
  (a) seed:  per-turn tokenizer calls, `+6` per turn, the seed's `split_one_sample`, one process;
  (b) floor: one batched tokenizer call over all turn texts (both cores);
  ours:      `merge()` — exact rendered lengths, fixed splitting rules.
It prints the times, the ratios ours/(a) and ours/(b), pieces over budget once rendered
(checked independently: every piece rendered and tokenized) and pairs lost.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

os.environ["TOKENIZERS_PARALLELISM"] = "true"  # the floor is the batched call on all cores
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from camel_chat.conversation import from_sharegpt
from camel_chat.data_preprocessing.merge import merge
from camel_chat.data_preprocessing.tally import Tally
from camel_chat.templates import SegmentEncoder, get_template, render
from camel_chat.templates.length import LengthModel

WORDS = (
    "the of and to in is that for it as with was on be by this are or at from an have not they which "
    "you can more one all their will has would there when use what about if each how some these make "
    "task solution instruction input code function data value list file system model step first next "
    "python implement create define return result output example following assistant user role plan "
    "analysis market research strategy customer product design develop ensure provide include improve "
    "team project budget schedule report table chart algorithm variable loop class method string number"
).split()


def camel_like(rng: random.Random, index: int) -> dict[str, Any]:
    """A conversation shaped like CAMEL role-play: instructions and long solutions."""
    pairs = rng.choice([1, 2, 3, 4, 5, 6, 8, 10, 12, 16])
    turns = []
    for _ in range(pairs):
        instruction = " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 60))).capitalize() + "."
        words = [rng.choice(WORDS) for _ in range(rng.randint(40, 400))]
        for k in range(12, len(words), rng.randint(12, 25)):
            words[k] += rng.choice([".", ",", ":\n", ".\n\n", ";"])
        if rng.random() < 0.2:
            words.append("\n```python\ndef f(x):\n    return x * 2\n```")
        turns += [{"from": "human", "value": instruction}, {"from": "gpt", "value": " ".join(words)}]
    return {"id": f"bench/{index:05d}", "conversations": turns}


def seed_split(records: list[dict[str, Any]], tokenizer: Any, max_length: int) -> list[dict[str, Any]]:
    """The seed's split_one_sample (spec §4.3): per-turn calls, +6 per turn, its quirks."""
    out = []
    for sample in records:
        conversations = sample["conversations"][: len(sample["conversations"]) // 2 * 2]
        lengths = [len(tokenizer(c["value"]).input_ids) + 6 for c in conversations]
        start_idx, cur_len = 0, 0
        for i in range(0, len(conversations), 2):
            tmp_len = lengths[i] + lengths[i + 1]
            if cur_len + tmp_len > max_length:
                out.append({"id": f"{sample['id']}_{start_idx}", "conversations": conversations[start_idx:i]})
                start_idx, cur_len = i, 0
            elif i == len(conversations) - 2:
                out.append(
                    {"id": f"{sample['id']}_{start_idx}", "conversations": conversations[start_idx : i + 2]}
                )
            cur_len += tmp_len
    return [p for p in out if p["conversations"]]


def rendered_lengths(pieces: list[dict[str, Any]], encoder: SegmentEncoder, template_name: str) -> list[int]:
    """Independent check: render every piece and tokenize its segments (one batched call)."""
    template = get_template(template_name)
    rendered = [render(template, from_sharegpt(p), special=encoder.special) for p in pieces]
    texts = [encoder.prepare(s.text, fixed=False) for segs in rendered for s in segs if s.message is not None]
    lengths = iter(encoder.count_texts(texts))
    return [
        sum(next(lengths) if s.message is not None else len(encoder.fixed_ids(s.text)) for s in segs)
        for segs in rendered
    ]


def timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=20_000)
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--template", default="vicuna_v1.1")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
    from real_tokenizers import ensure_real_tokenizers
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ensure_real_tokenizers()["llama-sp"])
    rng = random.Random(args.seed)
    records = [camel_like(rng, i) for i in range(args.conversations)]
    turn_texts = [t["value"] for r in records for t in r["conversations"]]
    pairs_in = sum(len(r["conversations"]) // 2 for r in records)
    print(f"{len(records)} conversations, {len(turn_texts)} turns, {pairs_in} pairs; tokenizer llama-sp")

    encoder = SegmentEncoder(tokenizer)
    floor, t_floor = timed(lambda: encoder.count_texts(turn_texts))
    print(f"tokens in turns: {sum(floor) / 1e6:.2f} M")
    seed_pieces, t_seed = timed(lambda: seed_split(records, tokenizer, args.max_length))
    model = LengthModel(get_template(args.template), encoder)
    tally = Tally("merge")
    ours, t_ours = timed(lambda: merge(records, model, args.max_length, args.seed, tally))

    def report(name: str, pieces: list[dict[str, Any]], seconds: float) -> None:
        lengths = rendered_lengths(pieces, encoder, args.template)
        over = sum(1 for n in lengths if n > args.max_length)
        pairs = sum(len(p["conversations"]) // 2 for p in pieces)
        lost = pairs_in - pairs
        print(
            f"{name:<6} {seconds:7.2f} s  pieces {len(pieces):6d}  over budget once rendered {over:5d}  "
            f"pairs lost {lost:5d} ({100 * lost / pairs_in:.2f} %)"
        )

    print(f"floor  {t_floor:7.2f} s  (one batched tokenizer call over all turn texts, counts only)")
    report("seed", seed_pieces, t_seed)
    report("ours", ours, t_ours)
    print(f"dropped by ours: {dict(tally.dropped)} (pairs longer than the budget on their own)")
    print(f"ratio ours/seed  = {t_ours / t_seed:.3f}  (target <= 0.5: at least 2x faster)")
    print(f"ratio ours/floor = {t_ours / t_floor:.3f}  (target <= 1.25)")


if __name__ == "__main__":
    main()
