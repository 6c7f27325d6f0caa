"""KAgentBench against an OpenAI-compatible server: ``infer`` and ``score``.

    python -m camel_chat.evaluation.kagentbench infer --api-base http://localhost:8000/v1 \\
        --model NAME --eval-file benchmark_eval.jsonl --out pred.jsonl [--concurrency 4]
    python -m camel_chat.evaluation.kagentbench score benchmark_eval.jsonl pred.jsonl

``infer`` sends every template of ``prompt_input`` as a raw prompt to ``POST {api-base}/completions``
with the sampling kagentsys uses (temperature 0.1, top_p 0.75, top_k 40, max_tokens 512) and
appends ``record + model_predict`` (dict template -> text; a plain string for ``profile``) to
``--out``, one complete JSON line per record, flushed and fsynced.  Records whose id is already in
``--out`` are skipped, so an interrupted run resumes.  A record whose requests keep failing
(5 attempts, exponential back-off) is not written and is retried on the next run.
Not done: the original inference scripts' prompt truncation to 3096 tokens (the server's own
context limit applies instead).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import httpx

from camel_chat.data_preprocessing.tally import Tally
from camel_chat.errors import CamelChatError
from camel_chat.evaluation.kagent_records import record_problem
from camel_chat.evaluation.kagent_scoring import format_result_line, score_benchmark
from camel_chat.json_input import read_jsonl as read_jsonl_lines

SAMPLING = {"temperature": 0.1, "top_p": 0.75, "top_k": 40}


def read_jsonl(path: str | os.PathLike, *, predictions: bool | None = None) -> list[dict]:
    """The JSON-object lines of `path`; a bad line (an interrupted append, a stray byte, not an
    object) is skipped and counted on stderr. A missing file is a `DataError`. With
    `predictions` set (True: a prediction file, False: an eval file) a record the scorer
    could not take is dropped the same way."""
    tally = Tally(f"reading {Path(path).name}")
    out = []
    for lineno, record in read_jsonl_lines(path, drop=tally.drop):
        if not isinstance(record, dict):
            tally.drop("not-an-object", f"line {lineno}")
            continue
        problem = None if predictions is None else record_problem(record, predictions)
        if problem:
            tally.drop("malformed-record", f"line {lineno}: {problem}")
        else:
            out.append(record)
    tally.keep(len(out))
    if tally.total_dropped:
        print(tally.summary(), file=sys.stderr)
    return out


def done_ids(path: Path) -> set:
    return {rec.get("id") for rec in read_jsonl(path)} if path.exists() else set()


class CompletionClient:
    def __init__(
        self,
        api_base: str,
        model: str,
        api_key: str | None = None,
        max_tokens: int = 512,
        retries: int = 5,
        backoff_s: float = 4.0,
        timeout_s: float = 600.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.url = api_base.rstrip("/") + "/completions"
        self.model, self.max_tokens, self.retries, self.backoff_s = model, max_tokens, retries, backoff_s
        self.http = httpx.Client(
            headers=headers, timeout=timeout_s, transport=transport, follow_redirects=True
        )

    def complete(self, prompt: str) -> str:
        body = {"model": self.model, "prompt": prompt, "max_tokens": self.max_tokens, **SAMPLING}
        error: Exception | None = None
        for attempt in range(self.retries):
            try:
                resp = self.http.post(self.url, json=body)
                resp.raise_for_status()
                return resp.json()["choices"][0]["text"]
            except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
                error = exc
                if attempt + 1 < self.retries:
                    time.sleep(self.backoff_s * (2**attempt))
        raise RuntimeError(f"completion failed after {self.retries} attempts: {error}")

    def close(self) -> None:
        self.http.close()


def predict_record(record: dict, complete: Callable[[str], str]) -> dict:
    prompts = record.get("prompt_input") or {}
    if record.get("type") == "profile":
        prompt = prompts.get("prompt") if isinstance(prompts, dict) else prompts
        predict: Any = complete(prompt)
    else:
        predict = {name: complete(text) for name, text in prompts.items()}
    return {**record, "model_predict": predict}


def run_inference(
    records: list[dict], out: Path, client: CompletionClient, concurrency: int = 4, log=print
) -> tuple[int, int, int]:
    """Returns (written, skipped, failed)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    seen = done_ids(out)
    pending = [r for r in records if r.get("id") not in seen]
    skipped = len(records) - len(pending)
    lock = threading.Lock()
    written = failed = 0
    if out.exists() and out.stat().st_size:
        with open(out, "rb") as f:
            f.seek(-1, os.SEEK_END)
            needs_newline = f.read(1) != b"\n"
        if needs_newline:  # drop the partial tail of an interrupted write onto its own line
            with open(out, "a", encoding="utf-8") as f:
                f.write("\n")
    with open(out, "a", encoding="utf-8") as sink, ThreadPoolExecutor(max(1, concurrency)) as pool:
        futures = {pool.submit(predict_record, r, client.complete): r for r in pending}
        for fut in as_completed(futures):
            rec = futures[fut]
            try:
                line = json.dumps(fut.result(), ensure_ascii=False) + "\n"
            except Exception as exc:  # a failed record is retried on the next run
                failed += 1
                log(f"record {rec.get('id')!r} failed: {exc}", file=sys.stderr)
                continue
            with lock:
                sink.write(line)
                sink.flush()
                os.fsync(sink.fileno())
                written += 1
    return written, skipped, failed


def main(argv: Sequence[str] | None = None, transport: httpx.BaseTransport | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m camel_chat.evaluation.kagentbench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    inf = sub.add_parser("infer", help="query a served model for every record and template")
    inf.add_argument("--api-base", required=True, help="OpenAI base URL, e.g. http://localhost:8000/v1")
    inf.add_argument("--model", required=True)
    inf.add_argument("--eval-file", required=True)
    inf.add_argument("--out", required=True)
    inf.add_argument("--concurrency", type=int, default=4)
    inf.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY"))
    inf.add_argument("--max-tokens", type=int, default=512)
    inf.add_argument("--retries", type=int, default=5)
    inf.add_argument("--backoff", type=float, default=4.0, help="first retry delay in seconds (doubles)")
    sc = sub.add_parser("score", help="score predictions like benchmark_eval.py")
    sc.add_argument("eval_file")
    sc.add_argument("pred_file")
    args = parser.parse_args(argv)
    try:
        return _run(args, transport)
    except CamelChatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    if args.command == "infer":
        records = read_jsonl(args.eval_file)
        client = CompletionClient(
            args.api_base,
            args.model,
            args.api_key,
            args.max_tokens,
            retries=args.retries,
            backoff_s=args.backoff,
            transport=transport,
        )
        try:
            written, skipped, failed = run_inference(records, Path(args.out), client, args.concurrency)
        finally:
            client.close()
        print(json.dumps({"written": written, "skipped": skipped, "failed": failed, "out": args.out}))
        return 1 if failed else 0

    try:
        evals = read_jsonl(args.eval_file, predictions=False)
        scores = score_benchmark(evals, read_jsonl(args.pred_file, predictions=True))
    except ValueError as exc:  # the prediction file does not cover the eval file
        raise CamelChatError(f"{args.pred_file}: {exc}") from None
    print(format_result_line(scores))
    print(json.dumps(scores, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
