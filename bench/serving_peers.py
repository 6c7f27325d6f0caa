"""Benchmark: our serving stack against `transformers serve --continuous-batching`, same checkpoint.

    python bench/serving_peers.py --model-path DIR [--clients 1,8,16] [--requests 16] [--rounds 2]
                                  [--max-tokens 32] [--device cpu] [--json out.json]

Both servers run at once on loopback (ours: API server -> controller -> model_worker, three
processes; the peer: one `transformers serve` process with continuous batching and paged
attention, the model preloaded), and are driven by the same closed-loop clients streaming
`/v1/chat/completions` with the same prompts, greedy decoding and `max_tokens`; client counts
and servers take turns round by round so drifting load hits both alike. Reported per server and
client count: completion tokens/s, requests/s, TTFT and TPOT percentiles, and the ratios
ours/peer of tokens/s and of TTFT p50 (issue 16's targets: >= 1.5x tokens/s at 8 and 16
clients, TTFT p50 <= the peer's). Completion tokens are the servers' own `usage` where they
send it (`stream_options.include_usage`), else the number of content deltas.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving import (
    MODEL,
    Result,
    Stack,
    Tally,
    closed_loop,
    free_port,
    stack_request,
    stop,
    wait_for,
)


class PeerServer:
    """`transformers serve --continuous-batching` on a free port, the model preloaded."""

    def __init__(self, path: Path, device: str, logdir: Path) -> None:
        self.path, self.device, self.log = path, device, logdir / "transformers-serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> str:
        import httpx

        port = free_port()
        cli = Path(sys.executable).with_name("transformers")
        command = [
            *([str(cli)] if cli.exists() else [sys.executable, "-m", "transformers.cli.transformers"]),
            *("serve", "--continuous-batching", "--device", self.device, "--dtype", "auto"),
            *("--host", "127.0.0.1", "--port", str(port), str(self.path)),
        ]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
        url = f"http://127.0.0.1:{port}"
        wait_for(
            lambda: httpx.get(f"{url}/health", timeout=2).status_code == 200, self.proc, "peer", self.log
        )
        return url

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            stop([self.proc])


async def measure(servers: dict[str, tuple[str, str]], args: argparse.Namespace) -> list[Result]:
    import httpx

    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    tallies = {(name, c): Tally(name, c) for name in servers for c in args.clients}
    clients = {
        name: httpx.AsyncClient(base_url=url, timeout=600, limits=limits, trust_env=False)
        for name, (url, _) in servers.items()
    }
    try:
        for name, (_, model) in servers.items():  # warm-up: first requests load kernels and caches
            await closed_loop(stack_request(clients[name], args.max_tokens, model), 2, 1)
        for r in range(args.rounds):
            for c in args.clients:
                order = list(servers) if r % 2 == 0 else list(reversed(servers))
                for name in order:
                    one = stack_request(clients[name], args.max_tokens, servers[name][1])
                    per_client = max(1, args.requests // c)
                    samples, seconds = await closed_loop(one, c, per_client)
                    tallies[(name, c)].samples.extend(samples)
                    tallies[(name, c)].seconds += seconds
    finally:
        for client in clients.values():
            await client.aclose()
    return [t.result() for t in tallies.values()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-path", type=Path, required=True, help="a checkpoint folder with a chat template")
    p.add_argument("--clients", default="1,8,16", help="comma-separated concurrent client counts")
    p.add_argument("--requests", type=int, default=16, help="requests per round and client count")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds")
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    args.clients = [int(c) for c in args.clients.split(",") if c]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with (
        tempfile.TemporaryDirectory(prefix="bench-serving-peers-") as tmp,
        Stack(args.model_path, args.device, Path(tmp)) as ours,
        PeerServer(args.model_path, args.device, Path(tmp)) as peer,
    ):
        servers = {"ours": (ours, MODEL), "transformers-serve": (peer, str(args.model_path))}
        results = asyncio.run(measure(servers, args))
    by = {(r.config, r.clients): r for r in results}
    summary: dict[str, Any] = {"results": [], "ratios": {}}
    for r in results:
        row = {"server": r.config, "clients": r.clients, "requests": r.requests, "tok_per_s": r.tok_per_s}
        summary["results"].append(
            {**row, "req_per_s": r.req_per_s, "ttft_ms": r.ttft_ms, "tpot_ms": r.tpot_ms}
        )
        ttft, tpot = r.ttft_ms.get("p50", float("nan")), r.tpot_ms.get("p50", float("nan"))
        print(
            f"{r.config:>18} {r.clients:>3} clients: {r.tok_per_s:8.1f} tok/s  "
            f"TTFT p50 {ttft:7.0f} ms  TPOT p50 {tpot:6.1f} ms"
        )
    for c in args.clients:
        ours_r, peer_r = by[("ours", c)], by[("transformers-serve", c)]
        ratio = {
            "tok_per_s": ours_r.tok_per_s / peer_r.tok_per_s,
            "ttft_p50": ours_r.ttft_ms["p50"] / peer_r.ttft_ms["p50"],
        }
        summary["ratios"][str(c)] = ratio
        print(
            f"{c:>3} clients: ours/peer tokens/s {ratio['tok_per_s']:.3f}, TTFT p50 {ratio['ttft_p50']:.3f}"
        )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
