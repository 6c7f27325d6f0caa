"""Soak: mixed load through the OpenAI API for a while, one worker killed and restarted halfway.

    python bench/soak.py [--duration 300] [--clients 16] [--workers 2] [--disconnecting 0.33]
                         [--limit-worker-concurrency 8] [--max-tokens 96] [--request-timeout 60]
                         [--model-path DIR] [--json out.json]

Starts a controller, `--workers` model_workers and the API server on free loopback ports (a tiny
random LLaMA with our vicuna_v1.1 template unless --model-path). `--clients` closed-loop clients
send chat completions, streaming or not at random (max_tokens uniform in 8..--max-tokens); a
third of the clients (`--disconnecting`) abandon every request at a random point (a streamed one
after a random number of SSE lines, a plain one after a random delay). At half time worker 0 is
killed (SIGKILL) and started again on the same port. Afterwards it checks, prints, and exits 1 if
any fails:

  - every worker's queue_length is 0 (within 5 s of the load stopping),
  - each process's resident memory grew < 10 % (from a sample taken once it is warm, a sixth of
    --duration into its life (the restarted worker's new life), to the end; Linux /proc),
  - no 5xx answer (or connection error) outside the dead-worker window (kill -> re-registered,
    plus the API's worker address TTL and a heartbeat),
  - no request hung past --request-timeout (deliberate disconnects excluded).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving import free_port, stop

MODEL = "Tiny-Vicuna"
PY = [sys.executable, "-m"]


def rss_mib(pid: int) -> float:
    """Resident memory of `pid` in MiB (Linux /proc; 0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@dataclass
class Proc:
    name: str
    command: list[str]
    url: str
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    rss: list[tuple[float, float]] = field(default_factory=list)  # (time, MiB) of this life

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "NO_PROXY": "*"}
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT, env=env)
        self.started = time.monotonic()
        self.rss = []

    def stop(self) -> None:
        if self.popen is not None:
            stop([self.popen])


async def wait_ready(client: httpx.AsyncClient, proc: Proc, worker: bool = False) -> None:
    """Until `proc` answers /health (a worker: and says it is registered at the controller)."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert proc.popen is not None
        if proc.popen.poll() is not None:
            raise SystemExit(f"{proc.name} exited:\n{proc.log.read_text(errors='replace')[-3000:]}")
        try:
            answer = await client.get(f"{proc.url}/health", timeout=2)
            if answer.status_code == 200 and (not worker or answer.json().get("registered")):
                return
        except (httpx.HTTPError, ValueError):
            pass
        await asyncio.sleep(0.2)
    raise SystemExit(f"{proc.name} not ready:\n{proc.log.read_text(errors='replace')[-3000:]}")


@dataclass
class Outcome:
    start: float
    end: float
    kind: str  # stream | plain
    abandon: bool
    status: int | None  # None: connection error
    result: str  # ok | abandoned | 429 | 5xx | 4xx | conn-error | hung


async def one_request(
    client: httpx.AsyncClient, api: str, rng: random.Random, abandon: bool, args: argparse.Namespace
) -> Outcome:
    stream = rng.random() < 0.5
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"Tell me about camel number {rng.randint(0, 999)}."}],
        "max_tokens": rng.randint(8, args.max_tokens),
        "temperature": rng.choice([0.0, 0.7]),
        "stream": stream,
    }
    start = time.monotonic()
    kind = "stream" if stream else "plain"

    def done(status: int | None, result: str) -> Outcome:
        return Outcome(start, time.monotonic(), kind, abandon, status, result)

    async def run() -> Outcome:
        url = f"{api}/v1/chat/completions"
        if not stream:
            response = await client.post(url, json=body)
            return done(response.status_code, classify(response.status_code))
        async with client.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                await response.aread()
                return done(response.status_code, classify(response.status_code))
            cut = rng.randint(1, 12) if abandon else None
            lines = 0
            async for line in response.aiter_lines():
                lines += line.startswith("data:")
                if cut is not None and lines >= cut:
                    return done(200, "abandoned")  # leaving the block closes the connection
            return done(200, "ok")

    try:
        if abandon and not stream:
            try:
                return await asyncio.wait_for(run(), rng.uniform(0.05, 2.0))
            except TimeoutError:
                return done(None, "abandoned")
        return await asyncio.wait_for(run(), args.request_timeout)
    except TimeoutError:
        return done(None, "hung")
    except httpx.HTTPError:
        return done(None, "conn-error")


def classify(status: int) -> str:
    if status == 200:
        return "ok"
    if status == 429:
        return "429"
    return "5xx" if status >= 500 else "4xx"


async def client_loop(
    index: int, api: str, stop_at: float, args: argparse.Namespace, out: list[Outcome]
) -> None:
    rng = random.Random(args.seed * 1000 + index)
    abandon = index < round(args.clients * args.disconnecting)
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=2)
    async with httpx.AsyncClient(timeout=args.request_timeout, limits=limits, trust_env=False) as client:
        while time.monotonic() < stop_at:
            outcome = await one_request(client, api, rng, abandon, args)
            out.append(outcome)
            if outcome.result in ("429", "5xx", "conn-error"):
                await asyncio.sleep(0.2)  # a client honouring Retry-After-ish backoff


async def sample_rss(procs: list[Proc], stop_at: float) -> None:
    while time.monotonic() < stop_at:
        for proc in procs:
            if proc.popen is not None and proc.popen.poll() is None:
                proc.rss.append((time.monotonic(), rss_mib(proc.popen.pid)))
        await asyncio.sleep(1.0)


def rss_growth(proc: Proc, warm: float) -> dict[str, float]:
    """RSS once warm (`warm` s into its life), halfway from there, and at the end, and the growth
    (the middle sample tells a plateau from a steady leak)."""
    warm_samples = [mib for t, mib in proc.rss if t - proc.started >= warm]
    if len(warm_samples) < 2:
        return {"warm_mib": 0.0, "mid_mib": 0.0, "end_mib": 0.0, "growth_pct": 0.0}
    first, mid, last = warm_samples[0], warm_samples[len(warm_samples) // 2], warm_samples[-1]
    return {
        "warm_mib": round(first, 1),
        "mid_mib": round(mid, 1),
        "end_mib": round(last, 1),
        "growth_pct": round(100 * (last / first - 1), 2),
    }


async def soak(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    checkpoint = Path(args.model_path) if args.model_path else write_checkpoint(root / "tiny-vicuna")
    c_port, a_port = free_port(), free_port()
    controller = f"http://127.0.0.1:{c_port}"
    procs = [Proc("controller", [*PY, "camel_chat.serve.controller", "--host", "127.0.0.1",
                                 "--port", str(c_port)], controller, root / "controller.log")]  # fmt: skip
    for i in range(args.workers):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        procs.append(Proc(f"worker{i}", [
            *PY, "camel_chat.serve.model_worker", "--host", "127.0.0.1", "--port", str(port),
            "--worker-address", url, "--controller-address", controller, "--model-path", str(checkpoint),
            "--model-names", MODEL, "--device", "cpu", "--heart-beat-interval", "2",
            "--limit-worker-concurrency", str(args.limit_worker_concurrency),
        ], url, root / f"worker{i}.log"))  # fmt: skip
    api = f"http://127.0.0.1:{a_port}"
    procs.append(Proc("api", [*PY, "camel_chat.serve.openai_api_server", "--host", "127.0.0.1", "--port",
                              str(a_port), "--controller-address", controller, "--log-level", "warning"],
                      api, root / "api.log"))  # fmt: skip
    workers = [p for p in procs if p.name.startswith("worker")]
    outcomes: list[Outcome] = []
    async with httpx.AsyncClient(trust_env=False) as control:
        try:
            for proc in procs:
                proc.start()
                await wait_ready(control, proc, worker=proc in workers)
            t0 = time.monotonic()
            stop_at = t0 + args.duration
            sampler = asyncio.ensure_future(sample_rss(procs, stop_at))
            clients = [
                asyncio.ensure_future(client_loop(i, api, stop_at, args, outcomes))
                for i in range(args.clients)
            ]
            await asyncio.sleep(args.duration / 2)
            victim = workers[0]
            assert victim.popen is not None
            killed_at = time.monotonic()
            victim.popen.send_signal(signal.SIGKILL)
            victim.popen.wait()
            victim.start()
            await wait_ready(control, victim, worker=True)
            back_at = time.monotonic()
            await asyncio.gather(*clients)
            await sampler
            ended = time.monotonic()
            queues = await settle_queues(control, workers)
        finally:
            for proc in reversed(procs):
                proc.stop()
    # The dead window: from the kill until the worker is registered again, plus what routing needs
    # to notice (the API's worker address TTL of 1 s and one heartbeat of 2 s) and the request timeout
    # for requests that were already on the dead worker's socket when it died.
    window = (killed_at, back_at + 3.0)
    return summarise(args, outcomes, procs, queues, t0, ended, window, killed_at)


async def settle_queues(control: httpx.AsyncClient, workers: list[Proc]) -> dict[str, int]:
    deadline = time.monotonic() + 5
    while True:
        queues = {}
        for proc in workers:
            answer = await control.post(f"{proc.url}/worker_get_status", timeout=5)
            queues[proc.name] = int(answer.json()["queue_length"])
        if not any(queues.values()) or time.monotonic() > deadline:
            return queues
        await asyncio.sleep(0.1)


def summarise(
    args: argparse.Namespace,
    outcomes: list[Outcome],
    procs: list[Proc],
    queues: dict[str, int],
    t0: float,
    ended: float,
    window: tuple[float, float],
    killed_at: float,
) -> dict[str, Any]:
    def in_window(o: Outcome) -> bool:
        return o.start <= window[1] and o.end >= window[0]

    failures = [o for o in outcomes if o.result in ("5xx", "conn-error")]
    outside = [o for o in failures if not in_window(o)]
    hung = [o for o in outcomes if o.result == "hung"]
    warm = args.duration / 6
    memory = {p.name: rss_growth(p, warm) for p in procs}  # worker0: from `warm` after its restart
    checks = {
        "queues_empty": not any(queues.values()),
        "rss_growth_below_10pct": all(m["growth_pct"] < 10 for m in memory.values()),
        "no_5xx_outside_dead_window": not outside,
        "no_hung_requests": not hung,
    }
    by_kind = Counter(f"{o.kind}{'-abandoning' if o.abandon else ''}:{o.result}" for o in outcomes)
    return {
        "duration_s": round(ended - t0, 1),
        "requests": len(outcomes),
        "outcomes": dict(sorted(by_kind.items())),
        "dead_window_s": [round(window[0] - t0, 1), round(window[1] - t0, 1)],
        "failures_in_dead_window": len(failures) - len(outside),
        "failures_outside_dead_window": len(outside),
        "hung": len(hung),
        "queues_after": queues,
        "rss": memory,
        "checks": checks,
        "killed_at_s": round(killed_at - t0, 1),
        "args": {k: v for k, v in vars(args).items() if k != "json"},
        "failures_outside_detail": [asdict(o) for o in outside[:10]],
    }


def write_checkpoint(out: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from transformers import AutoTokenizer

    from camel_chat.model.checkpoint import write_template_files
    from camel_chat.model.tiny import save_tiny

    save_tiny(out, arch="llama", max_length=1024)
    write_template_files(out, AutoTokenizer.from_pretrained(out), "vicuna_v1.1")
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--duration", type=float, default=300.0, help="seconds of load (default 300)")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--workers", type=int, default=2, help="worker 0 is killed and restarted halfway")
    p.add_argument("--disconnecting", type=float, default=1 / 3, help="fraction of clients that abandon")
    p.add_argument("--limit-worker-concurrency", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=96)
    p.add_argument("--request-timeout", type=float, default=60.0, help="a request slower than this is hung")
    p.add_argument("--model-path", default=None, help="default: a tiny random LLaMA written to a temp folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the summary here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="camel-chat-soak-") as tmp:
        summary = asyncio.run(soak(args, Path(tmp)))
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0 if all(summary["checks"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
