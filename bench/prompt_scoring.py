"""Benchmark: prompt scoring (lm-eval's loglikelihood requests) batched into one forward pass,
against one prefill per request, in the same process.

    python bench/prompt_scoring.py [--requests 32] [--prompt-tokens 96] [--rounds 3]
                                   [--model-path DIR] [--torch-threads N]

Each request is what lm-evaluation-harness's `local-completions` sends per choice: token ids,
`echo`, `logprobs: 1`, one new token. `batched` is the transformers engine as served (requests
that need no KV cache afterwards share one right-padded forward pass, `prompt_scoring`);
`per-request` is the same engine with that path switched off (each request its own prefill with
full logits, as before). Both get the same requests concurrently, interleaved `--rounds` times;
printed: requests/s of each and the ratio, and that both return the same logprobs (max |diff|).
Without --model-path a tiny random LLaMA is written to a temp folder.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


async def run_round(engine: Any, prompts: list[list[int]]) -> tuple[float, list[list[float | None]]]:
    from camel_chat.serve.protocol import GenerateRequest

    async def one(ids: list[int]) -> list[float | None]:
        request = GenerateRequest(
            prompt_token_ids=ids, echo=True, logprobs=1, max_new_tokens=1, temperature=0
        )
        last = [chunk async for chunk in engine.generate(request)][-1]
        return list(last.logprobs["token_logprobs"])

    start = time.perf_counter()
    values = await asyncio.gather(*(one(p) for p in prompts))
    return time.perf_counter() - start, values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--prompt-tokens", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model-path", default=None)
    parser.add_argument("--torch-threads", type=int, default=None)
    args = parser.parse_args(argv)

    from camel_chat.serve import request_state
    from camel_chat.serve.hf_engine import TransformersEngine

    path = args.model_path
    if path is None:
        from camel_chat.model.tiny import save_tiny

        path = str(save_tiny(Path(tempfile.mkdtemp()) / "tiny", arch="llama", max_length=1024))
    engine = TransformersEngine.from_pretrained(
        path, conv_template="vicuna_v1.1", max_batch_size=args.requests, num_threads=args.torch_threads
    )
    rng = random.Random(0)
    vocab = len(engine.tokenizer)
    prompts = [
        [rng.randrange(10, vocab) for _ in range(rng.randint(args.prompt_tokens // 2, args.prompt_tokens))]
        for _ in range(args.requests)
    ]
    scores_only = request_state.RequestState.scores_only
    off = property(lambda self: False)
    times: dict[str, list[float]] = {"batched": [], "per-request": []}
    results: dict[str, list[list[float | None]]] = {}

    async def rounds() -> None:
        await run_round(engine, prompts[:2])  # warm-up
        for _ in range(args.rounds):
            for name in ("batched", "per-request") if _ % 2 == 0 else ("per-request", "batched"):
                request_state.RequestState.scores_only = scores_only if name == "batched" else off  # type: ignore[method-assign]
                elapsed, values = await run_round(engine, prompts)
                times[name].append(elapsed)
                results[name] = values
        request_state.RequestState.scores_only = scores_only  # type: ignore[method-assign]

    try:
        asyncio.run(rounds())
    finally:
        engine.close()
    diff = max(
        abs(a - b)
        for x, y in zip(results["batched"], results["per-request"], strict=True)
        for a, b in zip(x[1:], y[1:], strict=True)
        if a is not None and b is not None
    )
    rate = {name: args.requests / statistics.median(t) for name, t in times.items()}
    print(f"model {path}: {args.requests} requests of {args.prompt_tokens // 2}-{args.prompt_tokens} tokens")
    for name, value in rate.items():
        print(f"{name:12} {value:8.1f} requests/s   (median of {args.rounds} rounds)")
    print(f"ratio batched / per-request: {rate['batched'] / rate['per-request']:.2f}x")
    print(f"max |logprob difference| between the two: {diff:.2e}")
    print(f"engine stats: {engine.stats()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
