"""Where a decode step of our transformers engine spends its time, at a given batch size.

    python bench/decode_profile.py --model-path .cache/models/smollm2-135m-instruct/checkpoint \
        [--clients 8] [--max-tokens 48] [--threads 2] [--json out.json]

`--clients` streaming chat requests (bench/serving.py's prompts, greedy) run through
`TransformersEngine.generate` in this process, all admitted at once so every decode step has the
same batch. Wall time is split, per decode step, into:
  forward      the model's forward pass, of which
  kv_cat       DynamicCache growing: every layer's keys and values concatenated with the new
               column (`DynamicLayer.update`), a full copy of the cache per step
  attention    scaled-dot-product attention over the padded cache (the "sdpa" function)
  (the rest of forward: the linear layers, norms, rotary, embedding, the LM head)
  draw         sampling the next tokens (`choose_tokens`) and `RequestState.accept` (logprobs,
               incremental detokenizing, stop strings): the per-row Python work
  batch        mask/position bookkeeping and row removal (`BatchCache`)
  rest         the scheduler's loop, event-loop hand-offs and the consumers (the remainder)
Each part is timed by wrapping the function that does it (the engine runs its steps in its own
thread, where torch.profiler does not look). This is a diagnosis, not a target:
it says which of the issue's remedies (a non-copying KV layout, decode without per-row Python)
would buy what, on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving import messages_for


def timed(totals: dict[str, float], key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[key] += time.perf_counter() - start

    return wrapper


async def run(engine: Any, clients: int, max_tokens: int) -> int:
    from camel_chat.serve.protocol import GenerateRequest

    async def one(i: int) -> int:
        request = GenerateRequest(
            model=engine.model_names[0], prompt="", messages=messages_for(i), temperature=0.0,
            max_new_tokens=max_tokens, echo=False, stop=None,
        )  # fmt: skip
        tokens = 0
        async for chunk in engine.generate(request):
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
        return tokens

    return sum(await asyncio.gather(*(one(i) for i in range(clients))))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-path", type=Path, required=True)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--threads", type=int, default=2, help="torch threads of the engine thread")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)

    import torch
    from transformers.cache_utils import DynamicLayer
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from camel_chat.serve import hf_engine, kv_batch, request_state
    from camel_chat.serve.hf_engine import TransformersEngine

    engine = TransformersEngine.from_pretrained(
        args.model_path, dtype="float32", num_threads=args.threads, max_batch_size=args.clients
    )
    totals: dict[str, float] = defaultdict(float)
    engine.model.forward = timed(totals, "forward", engine.model.forward)
    hf_engine.choose_tokens = timed(totals, "draw", hf_engine.choose_tokens)
    request_state.RequestState.accept = timed(totals, "draw", request_state.RequestState.accept)  # type: ignore[method-assign]
    for name in ("next_inputs", "advance", "keep"):
        setattr(kv_batch.BatchCache, name, timed(totals, "batch", getattr(kv_batch.BatchCache, name)))
    DynamicLayer.update = timed(totals, "kv_cat", DynamicLayer.update)  # type: ignore[method-assign]
    ALL_ATTENTION_FUNCTIONS["sdpa"] = timed(totals, "attention", ALL_ATTENTION_FUNCTIONS["sdpa"])
    engine._decode = timed(totals, "decode_step", engine._decode)  # type: ignore[method-assign]
    engine._prefill = timed(totals, "prefill", engine._prefill)  # type: ignore[method-assign]

    async def measure() -> tuple[int, float, int]:
        await run(engine, args.clients, 4)  # warm-up: first-call costs stay out of the figures
        totals.clear()
        steps_before = engine.stats()["decode_steps"]
        start = time.perf_counter()
        tokens = await run(engine, args.clients, args.max_tokens)
        wall = time.perf_counter() - start
        steps = engine.stats()["decode_steps"] - steps_before
        await engine.aclose()
        return tokens, wall, steps

    tokens, wall, steps = asyncio.run(measure())
    # forward/kv_cat/attention/draw are totals over prefill and decode ("_all"); decode_step is decode's own.
    decode_total = totals["decode_step"]
    figures = {
        "clients": args.clients,
        "max_tokens": args.max_tokens,
        "threads": args.threads,
        "torch": torch.__version__,
        "tokens": tokens,
        "wall_s": round(wall, 3),
        "tokens_per_s": round(tokens / wall, 1),
        "decode_steps": steps,
        "ms_per_decode_step": round(1000 * decode_total / max(steps, 1), 2),
        "prefill_s": round(totals["prefill"], 3),
        "shares_of_wall": {
            "prefill": round(totals["prefill"] / wall, 3),
            "decode_step": round(decode_total / wall, 3),
            "forward_all": round(totals["forward"] / wall, 3),
            "kv_cat_all": round(totals["kv_cat"] / wall, 3),
            "attention_all": round(totals["attention"] / wall, 3),
            "draw_all": round(totals["draw"] / wall, 3),
            "batch": round(totals["batch"] / wall, 3),
            "outside_engine_steps": round(1 - (totals["prefill"] + decode_total) / wall, 3),
        },
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
