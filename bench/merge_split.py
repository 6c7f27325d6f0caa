"""Benchmark: `python merge.py` against FastChat's own splitter and the tokenization floor.

    python bench/merge_split.py [--conversations 20000] [--max-length 2048] [--seed 0] [--rounds 1]

On the same generated CAMEL-like conversations (one `*_conv.json` file) and the real
LLaMA-family SentencePiece tokenizer (tools/real_tokenizers.py), in one run:
  fastchat: `python -m fastchat.data.split_long_conversation` (fschat 0.2.36, the splitter
            camel_chat inherited; its tokenizer-only path, its own process pool), whole process;
            skipped, saying so, where fschat is not installed
            (`pip install --no-deps fschat==0.2.36`: bench only, not a runtime requirement);
  floor:    `sentencepiece` encoding every turn text with num_threads = cores, in this process;
  ours:     `python merge.py`, whole process, with TOKENIZERS_PARALLELISM unset and =false.
Each output is then checked independently (every piece rendered with the template and its
segments tokenized by the Hugging Face tokenizer): pieces over budget and pairs lost.
Wall and CPU seconds (user + system, children included) are printed for each run, then the
ratios; with `--rounds N` the runs alternate order and the medians are compared.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from camel_chat.conversation import from_sharegpt
from camel_chat.data_preprocessing.jsonfile import write_json
from camel_chat.templates import SegmentEncoder, get_template, render
from camel_chat.templates.counting import RustCounter, cores

REPO = Path(__file__).resolve().parent.parent

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


def cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_process(cmd: list[str], env_changes: dict[str, str | None]) -> tuple[float, float, str]:
    """Wall and CPU seconds of a whole process (its pool workers included), and its stdout."""
    env = dict(os.environ)
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    cpu0, wall0 = cpu_children(), time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO, check=False)
    wall, cpu = time.perf_counter() - wall0, cpu_children() - cpu0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, cpu, proc.stdout


def floor(texts: list[str], model_file: Path) -> tuple[float, float, int]:
    """sentencepiece over every turn text on all cores: wall, CPU seconds, tokens."""
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    tokens = sum(len(ids) for ids in sp.encode(texts, num_threads=cores()))
    return time.perf_counter() - wall0, time.process_time() - cpu0, tokens


def rust_backend(tokenizer: Any, texts: list[str]) -> None:
    """The Rust backend (tokenizers without a tokenizer.model): one `encode_batch_fast` call,
    which obeys TOKENIZERS_PARALLELISM, against `RustCounter`'s one slice per core."""
    backend = tokenizer.backend_tokenizer
    saved = os.environ.get("TOKENIZERS_PARALLELISM")
    print(f"Rust backend on {len(texts)} turns (the tokenizers library reads the variable per call):")
    try:
        for setting in ("false", "true"):
            os.environ["TOKENIZERS_PARALLELISM"] = setting
            for name, count in (
                (
                    "one encode_batch_fast call",
                    lambda: backend.encode_batch_fast(texts, add_special_tokens=False),
                ),
                (f"RustCounter ({cores()} threads)", lambda: RustCounter(tokenizer).count(texts)),
            ):
                cpu0, wall0 = time.process_time(), time.perf_counter()
                count()
                wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
                print(
                    f"  TOKENIZERS_PARALLELISM={setting:<5} {name:<28} wall {wall:6.2f} s  cpu {cpu:6.2f} s"
                )
    finally:
        if saved is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = saved


def check(
    pieces: list[dict[str, Any]], tokenizer: Any, template_name: str, max_length: int
) -> tuple[int, int]:
    """(pieces over budget, pairs kept): each piece rendered, its segments tokenized by the
    Hugging Face tokenizer (the Rust backend, independent of merge.py's counter)."""
    encoder = SegmentEncoder(tokenizer)
    template = get_template(template_name)
    rendered = [render(template, from_sharegpt(p), special=encoder.special) for p in pieces]
    texts = [encoder.prepare(s.text, fixed=False) for segs in rendered for s in segs if s.message is not None]
    lengths = iter(RustCounter(tokenizer).count(texts))
    totals = [
        sum(next(lengths) if s.message is not None else len(encoder.fixed_ids(s.text)) for s in segs)
        for segs in rendered
    ]
    return sum(1 for n in totals if n > max_length), sum(len(p["conversations"]) // 2 for p in pieces)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=20_000)
    parser.add_argument("--max-length", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--template", default="vicuna_v1.1")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the timed runs, alternating order")
    parser.add_argument(
        "--rust-sample",
        type=int,
        default=2000,
        help="conversations for the Rust-backend comparison (0: skip)",
    )
    args = parser.parse_args()

    sys.path.insert(0, str(REPO / "tools"))
    from real_tokenizers import ensure_real_tokenizers
    from transformers import AutoTokenizer

    llama = ensure_real_tokenizers()["llama-sp"]
    tokenizer = AutoTokenizer.from_pretrained(llama)
    rng = random.Random(args.seed)
    records = [camel_like(rng, i) for i in range(args.conversations)]
    texts = [t["value"] for r in records for t in r["conversations"]]
    pairs_in = sum(len(r["conversations"]) // 2 for r in records)
    have_fastchat = importlib.util.find_spec("fastchat") is not None
    print(
        f"{len(records)} conversations, {len(texts)} turns, {pairs_in} pairs; tokenizer llama-sp; "
        f"{cores()} cores; max length {args.max_length}"
    )
    if not have_fastchat:
        print("fastchat: not installed (pip install --no-deps fschat==0.2.36); its run is skipped")

    with tempfile.TemporaryDirectory(prefix="merge_split_") as tmp:
        work = Path(tmp)
        write_json(work / "bench_conv.json", records)
        length = ["--max-length", str(args.max_length)]
        fastchat = [sys.executable, "-m", "fastchat.data.split_long_conversation", "--in-file"]
        fastchat += [str(work / "bench_conv.json"), "--out-file", str(work / "fastchat.json")]
        fastchat += ["--model-name-or-path", str(llama), *length]
        ours = [sys.executable, "merge.py", "--in-directory", str(work), "--tokenizer-path", str(llama)]
        ours += [*length, "--template", args.template, "--seed", "42"]
        tp_false = {"TOKENIZERS_PARALLELISM": "false"}
        runs: dict[str, tuple[list[str], dict[str, str | None]]] = {
            "ours": ([*ours, "--out-file", "ours.json"], {"TOKENIZERS_PARALLELISM": None}),
            "ours TP=false": ([*ours, "--out-file", "ours_tp_false.json"], tp_false),
        }
        if have_fastchat:
            runs["fastchat"] = (fastchat, {"TOKENIZERS_PARALLELISM": None})
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in [*runs, "floor"]}
        tokens = 0
        for round_ in range(args.rounds):
            order = [*runs, "floor"]
            for name in order if round_ % 2 == 0 else order[::-1]:
                if name == "floor":
                    wall, cpu, tokens = floor(texts, llama / "tokenizer.model")
                else:
                    wall, cpu, stdout = run_process(*runs[name])
                    if name.startswith("ours"):
                        backend = [line for line in stdout.splitlines() if line.startswith("token counts")]
                        print(f"  {name}: {'; '.join(backend)}")
                times[name].append((wall, cpu))
                load = os.getloadavg()[0]  # the machine may be shared: wall time depends on it
                print(
                    f"  round {round_ + 1} {name:<14} wall {wall:7.2f} s cpu {cpu:7.2f} s (load {load:.1f})",
                    flush=True,
                )
        print(f"tokens in turns: {tokens / 1e6:.2f} M")

        def median(name: str, k: int) -> float:
            return statistics.median(t[k] for t in times[name])

        same = (work / "ours.json").read_bytes() == (work / "ours_tp_false.json").read_bytes()
        print(f"ours and ours TP=false wrote identical files: {same}")
        print(f"{'run':<14} {'wall s':>8} {'cpu s':>8}  pieces  over budget  pairs lost")
        for name in times:
            out = {"fastchat": "fastchat.json", "ours": "ours.json", "ours TP=false": "ours_tp_false.json"}
            if name not in out:
                print(f"{name:<14} {median(name, 0):8.2f} {median(name, 1):8.2f}  (counts only)")
                continue
            if name == "ours TP=false" and same:
                pass  # the same bytes as "ours": the same pieces, over-budget and lost counts
            else:
                pieces = json.loads((work / out[name]).read_text(encoding="utf-8"))
                over, kept = check(pieces, tokenizer, args.template, args.max_length)
            lost = pairs_in - kept
            print(
                f"{name:<14} {median(name, 0):8.2f} {median(name, 1):8.2f}  {len(pieces):6d}  {over:11d}  "
                f"{lost:6d} ({100 * lost / pairs_in:.2f} %)"
            )
    if args.rust_sample:
        rust_backend(tokenizer, texts[: sum(len(r["conversations"]) for r in records[: args.rust_sample])])
    for mine in ("ours", "ours TP=false"):
        if have_fastchat:
            print(
                f"speed-up fastchat/{mine} = {median('fastchat', 0) / median(mine, 0):.3f} wall, "
                f"{median('fastchat', 1) / median(mine, 1):.3f} cpu  (target >= 1.3)"
            )
        print(
            f"ratio {mine}/floor = {median(mine, 0) / median('floor', 0):.3f} wall, "
            f"{median(mine, 1) / median('floor', 1):.3f} cpu  (target <= 1.15)"
        )


if __name__ == "__main__":
    main()
