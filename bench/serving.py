"""Benchmark: the serving stack against the engine in-process, and dynamic batching against one-at-a-time.

    python bench/serving.py [--clients 1,16] [--requests 16] [--rounds 3] [--max-tokens 64]
                            [--model-path DIR] [--device cpu|cuda] [--torch-threads N] [--json out.json]

Closed-loop streaming clients (each sends its next request when the previous one ends), the same
prompts and greedy decoding everywhere, in one run:
  (a) `stack`: API server -> controller -> model_worker, three processes on loopback, clients
      streaming `/v1/chat/completions` (SSE, include_usage), against `engine`: the same
      TransformersEngine called in this process (max batch 32). Overhead = 1 - stack/engine
      tokens/s, at every client count (the issue's bar: <= 10 % at 1 client).
  (b) `engine` against `engine-bs1`: the engine with max batch size 1, i.e. one request at a
      time like FastChat's worker, at the largest client count (the issue's bar: >= 3x tokens/s).
The configurations run interleaved, `--rounds` times each, and are pooled, so load that drifts
during the run (a shared machine) hits them alike. Reported per configuration: requests/s,
completion tokens/s, time to first token and time per output token (TPOT = (last - first token
time) / (tokens - 1)) percentiles. Without --model-path a tiny random LLaMA with our vicuna_v1.1
template is written to a temp folder (the default run takes about a minute on 2 idle CPU cores).
Token counts are the exact usage the engine/server report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODEL = "bench-model"
TOPICS = (
    "the history of camels", "how to bake bread", "a short poem about rain", "sorting algorithms",
    "the water cycle", "tips for a job interview", "why the sky is blue", "a recipe for soup",
    "the rules of chess", "how vaccines work", "a story about a robot", "learning a new language",
    "saving energy at home", "the solar system", "writing clean code", "planning a garden",
)  # fmt: skip


def messages_for(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Please tell me about {TOPICS[i % len(TOPICS)]}. (request {i})"}]


# ------------------------------------------------------------------------- measurements


@dataclass
class Sample:
    ttft: float
    latency: float
    tokens: int

    @property
    def tpot(self) -> float | None:
        return (self.latency - self.ttft) / (self.tokens - 1) if self.tokens > 1 else None


@dataclass
class Result:
    config: str
    clients: int
    requests: int
    seconds: float
    tokens: int
    ttft_ms: dict[str, float] = field(default_factory=dict)
    tpot_ms: dict[str, float] = field(default_factory=dict)

    @property
    def req_per_s(self) -> float:
        return self.requests / self.seconds

    @property
    def tok_per_s(self) -> float:
        return self.tokens / self.seconds


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000

    return {"p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99), "mean": statistics.fmean(ordered) * 1000}


OneRequest = Callable[[int], Awaitable[Sample]]


async def closed_loop(one: OneRequest, clients: int, per_client: int) -> tuple[list[Sample], float]:
    """`clients` concurrent loops, each sending `per_client` requests back to back."""
    samples: list[Sample] = []

    async def client(c: int) -> None:
        for k in range(per_client):
            samples.append(await one(c * per_client + k))

    start = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    return samples, time.perf_counter() - start


@dataclass
class Tally:
    """One configuration's samples and wall time, pooled over the interleaved rounds."""

    config: str
    clients: int
    samples: list[Sample] = field(default_factory=list)
    seconds: float = 0.0

    def result(self) -> Result:
        return Result(
            self.config,
            self.clients,
            len(self.samples),
            self.seconds,
            sum(s.tokens for s in self.samples),
            percentiles([s.ttft for s in self.samples]),
            percentiles([t for s in self.samples if (t := s.tpot) is not None]),
        )


# ------------------------------------------------------------------------- in-process engine


def engine_request(engine: Any, max_tokens: int) -> OneRequest:
    from camel_chat.serve.protocol import GenerateRequest

    async def one(i: int) -> Sample:
        request = GenerateRequest(
            messages=messages_for(i), max_new_tokens=max_tokens, temperature=0.0, echo=False
        )
        start = time.perf_counter()
        first = None
        tokens = 0
        async for chunk in engine.generate(request):
            if first is None and chunk.text:
                first = time.perf_counter()
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
        end = time.perf_counter()
        return Sample((first or end) - start, end - start, tokens)

    return one


def _per_client(args: argparse.Namespace, clients: int) -> int:
    """1 client sends all `--requests` in a row; c clients at least 2 each (so the batch refills)."""
    return args.requests if clients == 1 else max(2, args.requests // clients)


# ------------------------------------------------------------------------- the stack


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{what} did not start:\n{log.read_text(errors='replace')[-3000:]}")


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """Terminate the processes still running (last started first), wait for each, kill those
    that do not exit within 15 s."""
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Stack:
    """controller + model_worker + openai_api_server on free loopback ports; stopped on exit."""

    def __init__(self, path: Path, device: str, logdir: Path) -> None:
        self.path, self.device, self.logdir = path, device, logdir
        self.procs: list[subprocess.Popen[bytes]] = []

    worker = ""

    def __enter__(self) -> str:
        import httpx

        c, w, a = free_port(), free_port(), free_port()
        controller, worker, api = (f"http://127.0.0.1:{p}" for p in (c, w, a))
        py = [sys.executable, "-m"]
        plan = [
            ("controller", [
                *py, "camel_chat.serve.controller", "--host", "127.0.0.1", "--port", str(c),
            ], controller),
            ("worker", [
                *py, "camel_chat.serve.model_worker", "--host", "127.0.0.1", "--port", str(w),
                "--worker-address", worker, "--controller-address", controller,
                "--model-path", str(self.path), "--model-names", MODEL, "--device", self.device,
            ], worker),
            ("api", [
                *py, "camel_chat.serve.openai_api_server", "--host", "127.0.0.1", "--port", str(a),
                "--controller-address", controller, "--log-level", "warning",
            ], api),
        ]  # fmt: skip
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for name, command, url in plan:
            log = self.logdir / f"{name}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
            self.procs.append(proc)
            health = f"{url}/health"
            wait_for(lambda h=health: httpx.get(h, timeout=2).status_code == 200, proc, name, log)
            if name == "worker":

                def registered() -> bool:
                    return MODEL in httpx.post(f"{controller}/list_models", timeout=2).json()["models"]

                wait_for(registered, proc, "worker registration", log)
        self.worker = worker
        return api

    def __exit__(self, *exc: object) -> None:
        stop(self.procs)


def worker_request(client: Any, worker: str, max_tokens: int) -> OneRequest:
    """Straight to the worker's `/worker_generate_stream` (no API server, no controller)."""
    from camel_chat.serve.protocol import aiter_chunks

    async def one(i: int) -> Sample:
        body = {
            "model": MODEL,
            "prompt": "",
            "messages": messages_for(i),
            "max_new_tokens": max_tokens,
            "temperature": 0.0,
            "echo": False,
        }
        start = time.perf_counter()
        first = None
        tokens = 0
        async with client.stream("POST", f"{worker}/worker_generate_stream", json=body) as response:
            response.raise_for_status()
            async for chunk in aiter_chunks(response.aiter_bytes()):
                if chunk.get("error_code"):
                    raise RuntimeError(chunk["text"])
                if first is None and chunk.get("text"):
                    first = time.perf_counter()
                if chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
        end = time.perf_counter()
        return Sample((first or end) - start, end - start, tokens)

    return one


def stack_request(client: Any, max_tokens: int, model: str = MODEL) -> OneRequest:
    """One streamed chat completion; TTFT at the first content delta. Completion tokens are the
    server's `usage` (`stream_options.include_usage`), else the number of content deltas."""

    async def one(i: int) -> Sample:
        body = {
            "model": model,
            "messages": messages_for(i),
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        start = time.perf_counter()
        first, deltas, usage = None, 0, None
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            response.raise_for_status()
            async for line in _sse_lines(response):
                if line == "[DONE]":
                    break
                data = json.loads(line)
                if "error" in data:
                    raise RuntimeError(data["error"])
                if data.get("usage"):
                    usage = data["usage"]["completion_tokens"]
                choices = data.get("choices") or []
                if choices and (choices[0].get("delta") or {}).get("content"):
                    deltas += 1
                    first = first or time.perf_counter()
        end = time.perf_counter()
        return Sample((first or end) - start, end - start, usage if usage is not None else deltas)

    return one


async def _sse_lines(response: Any) -> AsyncIterator[str]:
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            yield line[len("data: ") :]


async def run_all(path: Path, stack: Stack | None, api: str | None, args: argparse.Namespace) -> list[Result]:
    """Every configuration, interleaved round by round so that load drifts hit them alike."""
    import httpx

    from camel_chat.serve.hf_engine import TransformersEngine

    def load(batch: int) -> Any:
        return TransformersEngine.from_pretrained(
            path, model_names=[MODEL], device=args.device, max_batch_size=batch
        )

    engines = {"engine": load(32), "engine-bs1": load(1)}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    client = httpx.AsyncClient(base_url=api or "http://unused", timeout=300, limits=limits, trust_env=False)
    ones: dict[str, OneRequest] = {name: engine_request(e, args.max_tokens) for name, e in engines.items()}
    if api is not None:
        ones["stack"] = stack_request(client, args.max_tokens)
        if stack is not None and args.worker_direct:
            ones["worker"] = worker_request(client, stack.worker, args.max_tokens)
    try:
        for one in ones.values():
            await one(0)  # warm-up
        tallies: dict[tuple[str, int], Tally] = {}
        for clients in args.clients:
            configs = ["engine", *(name for name in ("worker", "stack") if name in ones)]
            if clients == max(args.clients):
                configs.append("engine-bs1")
            for _round in range(args.rounds):
                for config in configs:
                    samples, seconds = await closed_loop(ones[config], clients, _per_client(args, clients))
                    tally = tallies.setdefault((config, clients), Tally(config, clients))
                    tally.samples += samples
                    tally.seconds += seconds
        return [t.result() for t in tallies.values()]
    finally:
        await client.aclose()
        for engine in engines.values():
            await engine.aclose()


# ------------------------------------------------------------------------- report


def write_checkpoint(out: Path) -> Path:
    from transformers import AutoTokenizer

    from camel_chat.model.checkpoint import write_template_files
    from camel_chat.model.tiny import save_tiny

    save_tiny(out, arch="llama", max_length=2048)
    write_template_files(out, AutoTokenizer.from_pretrained(out), "vicuna_v1.1")
    return out


def report(results: list[Result]) -> dict[str, Any]:
    header = (
        f"{'config':<11}{'clients':>8}{'reqs':>6}{'req/s':>9}{'tok/s':>10}"
        f"{'TTFT p50':>10}{'p90':>8}{'p99':>8}{'TPOT p50':>10}{'p90':>8}{'p99':>8}  (ms)"
    )
    print(header)
    for r in results:
        t, p = r.ttft_ms, r.tpot_ms
        print(
            f"{r.config:<11}{r.clients:>8}{r.requests:>6}{r.req_per_s:>9.2f}{r.tok_per_s:>10.1f}"
            f"{t.get('p50', 0):>10.1f}{t.get('p90', 0):>8.1f}{t.get('p99', 0):>8.1f}"
            f"{p.get('p50', 0):>10.2f}{p.get('p90', 0):>8.2f}{p.get('p99', 0):>8.2f}"
        )
    by = {(r.config, r.clients): r for r in results}
    ratios: dict[str, float] = {}
    print()
    for (config, clients), r in sorted(by.items()):
        engine = by.get(("engine", clients))
        if config in ("stack", "worker") and engine is not None:
            overhead = 1 - r.tok_per_s / engine.tok_per_s
            key = "overhead" if config == "stack" else "worker_only_overhead"
            ratios[f"{key}_tok_s_{clients}_clients"] = overhead
            label = "(a)" if config == "stack" else "   "
            print(
                f"{label} {clients:>2} client(s): {config} {r.tok_per_s:.1f} tok/s vs engine in-process "
                f"{engine.tok_per_s:.1f} tok/s -> overhead {overhead:+.1%} "
                f"(req/s {r.req_per_s:.2f} vs {engine.req_per_s:.2f})"
            )
    for (config, clients), r in sorted(by.items()):
        batched = by.get(("engine", clients))
        if config == "engine-bs1" and batched is not None:
            speedup = batched.tok_per_s / r.tok_per_s
            ratios[f"batching_speedup_{clients}_clients"] = speedup
            print(
                f"(b) {clients:>2} clients: dynamic batching {batched.tok_per_s:.1f} tok/s vs one at a time "
                f"{r.tok_per_s:.1f} tok/s -> {speedup:.2f}x"
            )
    return {
        "results": [{**asdict(r), "req_per_s": r.req_per_s, "tok_per_s": r.tok_per_s} for r in results],
        **ratios,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", default="1,16", help="comma-separated concurrent client counts")
    p.add_argument(
        "--requests",
        type=int,
        default=16,
        help="requests per round and client count (1 client: all in a row)",
    )
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per configuration")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="OMP/torch threads for the engine here and in the worker (default: torch's own choice)",
    )
    p.add_argument("--model-path", type=Path, help="default: a tiny random LLaMA written to a temp folder")
    p.add_argument("--device", default="cpu")
    p.add_argument("--skip-stack", action="store_true", help="only the in-process engine comparisons")
    p.add_argument(
        "--worker-direct",
        action="store_true",
        help="also stream straight from the worker (where the stack's overhead comes from)",
    )
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    args.clients = [int(c) for c in str(args.clients).split(",") if c]
    if args.torch_threads:  # set before torch is imported here; inherited by the worker process
        os.environ["OMP_NUM_THREADS"] = str(args.torch_threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        path = args.model_path or write_checkpoint(Path(tmp) / "tiny-vicuna")
        threads = os.environ.get("OMP_NUM_THREADS", "default")
        print(
            f"model {path} on {args.device}; {args.max_tokens} new tokens per request, greedy; "
            f"clients {args.clients}; {os.cpu_count()} CPUs, torch threads {threads}",
            flush=True,
        )
        if args.skip_stack:
            results = asyncio.run(run_all(path, None, None, args))
        else:
            stack = Stack(path, args.device, Path(tmp))
            with stack as api:
                results = asyncio.run(run_all(path, stack, api, args))
        summary = report(results)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
