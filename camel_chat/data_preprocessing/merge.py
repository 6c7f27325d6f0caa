"""Merge `*_conv.json` files into one `dataset.json` whose conversations fit the token budget.

    python merge.py --in-directory datasets --out-file dataset.json \\
        --tokenizer-path PATH --max-length 2048 [--template vicuna_v1.1] [--seed 42]

(also `python -m camel_chat.data_preprocessing.merge`). As in the seed, a relative
`--out-file` is written inside `--in-directory`. Conversations are split on turn-pair
boundaries so that every piece, rendered with `--template` (BOS, system prompt, role
headers, separators and end-of-turn tokens included), is at most `--max-length` tokens;
see `split.py` for the rules. Invalid records are dropped and counted by reason; the
output is shuffled with a fixed seed and written atomically.

Speed: token counting is most of the work, so it runs on the fastest exact backend for the
tokenizer (`camel_chat.templates.counting`: sentencepiece for LLaMA-family tokenizers, the
Rust tokenizer otherwise) on every core, whatever `TOKENIZERS_PARALLELISM` says; the line
"token counts: ..." says which. The pieces are written as they are built (the split and
shuffle need only the token counts), into a temporary file renamed at the end.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from camel_chat.data_preprocessing.jsonfile import write_json_array
from camel_chat.data_preprocessing.split import Prepared, piece, prepare_all, spans
from camel_chat.data_preprocessing.tally import Tally
from camel_chat.errors import CamelChatError, run_command
from camel_chat.json_input import iter_json_array
from camel_chat.templates.counting import choose_counter
from camel_chat.templates.encode import SegmentEncoder
from camel_chat.templates.length import LengthModel
from camel_chat.templates.template import get_template, list_templates


def load_tokenizer(path: str) -> Any:
    """A fast tokenizer from a local folder (or the hub cache); a clear error if it is missing."""
    from transformers import AutoTokenizer  # tokenizer code only: no model, no torch needed

    try:
        return AutoTokenizer.from_pretrained(path, use_fast=True)
    except (OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CamelChatError(f"--tokenizer-path {path}: cannot load a tokenizer ({first_line})") from None


def load_conversations(directory: Path) -> list[dict[str, Any]]:
    files = sorted(directory.glob("*_conv.json"))
    if not files:
        raise CamelChatError(f"--in-directory {directory}: no *_conv.json files (run the conversion first)")
    records: list[dict[str, Any]] = []
    # Records are independent: one that is not UTF-8, too deep or not JSON is dropped and counted.
    reading = Tally("merge: reading")
    for path in files:
        before = len(records)
        records.extend(iter_json_array(path, drop=reading.drop))
        print(f"{path.name} has {len(records) - before} conversations.")
    if reading.total_dropped:
        reading.keep(len(records))
        print(reading.summary())
    return records


def plan(
    records: Sequence[dict[str, Any]], model: LengthModel, max_length: int, seed: int, tally: Tally
) -> list[tuple[Prepared, int, int]]:
    """Validate, split and shuffle, as (conversation, start, end) turn ranges; pure apart
    from the tokenizer behind `model`. The shuffle permutes the pieces exactly as
    `random.Random(seed).shuffle` would permute the list of piece records."""
    ranges: list[tuple[Prepared, int, int]] = []
    for prepared in prepare_all(records, model, tally):
        tally.keep()
        ranges += [(prepared, start, end) for start, end in spans(prepared, max_length, tally)]
    random.Random(seed).shuffle(ranges)
    return ranges


def iter_pieces(ranges: Sequence[tuple[Prepared, int, int]]) -> Iterator[dict[str, Any]]:
    """The piece records of a plan, built one at a time (for streaming them out)."""
    for prepared, start, end in ranges:
        yield piece(prepared, start, end)


def merge(
    records: Sequence[dict[str, Any]], model: LengthModel, max_length: int, seed: int, tally: Tally
) -> list[dict[str, Any]]:
    """Validate, split and shuffle; pure apart from the tokenizer behind `model`."""
    return list(iter_pieces(plan(records, model, max_length, seed, tally)))


def run(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    directory = Path(args.in_directory)
    if not directory.is_dir():
        raise CamelChatError(f"--in-directory {directory}: no such directory")
    if args.max_length < 16:
        raise CamelChatError(f"--max-length {args.max_length}: too small to hold a turn pair")
    template = get_template(args.template)
    tokenizer = load_tokenizer(args.tokenizer_path)
    counter = choose_counter(tokenizer, note=print)
    print(f"token counts: {counter.name} backend")
    model = LengthModel(template, SegmentEncoder(tokenizer), counter)
    records = load_conversations(directory)
    tally = Tally("merge")
    ranges = plan(records, model, args.max_length, args.seed, tally)
    out = directory / args.out_file
    written = write_json_array(out, iter_pieces(ranges))
    print(tally.summary())
    print(f"total: {len(records)}, new: {written}")
    print(f"wrote {out}")
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python merge.py",
        description="Merge *_conv.json files into one dataset whose conversations fit --max-length tokens.",
    )
    parser.add_argument("--in-directory", required=True, help="folder holding the *_conv.json files")
    parser.add_argument(
        "--out-file", default="dataset.json", help="output file; a relative path is inside --in-directory"
    )
    parser.add_argument("--tokenizer-path", required=True, help="tokenizer folder (or hub id) of the model")
    parser.add_argument("--max-length", type=int, default=2048, help="token budget per piece (default 2048)")
    parser.add_argument(
        "--template",
        default="vicuna_v1.1",
        choices=list_templates(),
        help="chat template the model is trained with (default vicuna_v1.1)",
    )
    parser.add_argument("--seed", type=int, default=42, help="shuffle seed (default 42)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(run, argv)


if __name__ == "__main__":
    sys.exit(main())
