"""Send one message to a model worker and print the streamed reply: `python -m camel_chat.serve.test_message`.

    python -m camel_chat.serve.test_message --model-name NAME [--controller-address URL]
        [--worker-address URL] [--message TEXT] [--temperature 0.0] [--max-new-tokens 32]

FastChat's flow: refresh the controller's workers, list the models, ask for a worker address
(skipped with --worker-address), then stream `/worker_generate_stream`. The message goes as
`messages` so the worker renders it with its own template. Exit status 1 when no worker serves
the model (the controller's models are listed) or the worker reports an error; 2 on bad flags or
an unreachable server.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import httpx

from camel_chat.errors import CamelChatError, run_command
from camel_chat.serve.protocol import NulSplitter

HEADERS = {"User-Agent": "FastChat Client"}


class NoWorker(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m camel_chat.serve.test_message", description="Send one message to a worker."
    )
    p.add_argument("--controller-address", default="http://localhost:21001")
    p.add_argument("--worker-address", default=None, help="talk to this worker, bypassing the controller")
    p.add_argument("--model-name", required=True, help="the registered name (the folder name by default)")
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--message", default="Tell me a story with more than 1000 words.")
    return p


def _worker_address(client: httpx.Client, controller: str, model: str) -> str:
    client.post(f"{controller}/refresh_all_workers").raise_for_status()
    answer = client.post(f"{controller}/list_models")
    answer.raise_for_status()
    models = sorted(answer.json().get("models", []))
    print(f"Models: {models}")
    answer = client.post(f"{controller}/get_worker_address", json={"model": model})
    answer.raise_for_status()
    address = answer.json().get("address", "")
    if not address:
        available = ", ".join(models) if models else "none"
        raise NoWorker(f"no worker serves model {model!r}; the controller at {controller} has: {available}")
    print(f"worker_addr: {address}")
    return str(address)


def _stream(client: httpx.Client, worker: str, args: argparse.Namespace) -> int:
    body = {
        "model": args.model_name,
        "prompt": "",
        "messages": [{"role": "user", "content": args.message}],
        "temperature": args.temperature,
        "max_new_tokens": args.max_new_tokens,
        "echo": False,
    }
    print(f"USER: {args.message}")
    print("ASSISTANT: ", end="", flush=True)
    shown = ""
    splitter = NulSplitter()
    with client.stream("POST", f"{worker}/worker_generate_stream", json=body, headers=HEADERS) as response:
        if response.status_code != 200:
            response.read()
            print()
            print(f"error: the worker answered {response.status_code}: {response.text}", file=sys.stderr)
            return 1
        for piece in response.iter_bytes():
            frames = splitter.feed(piece)
            for frame in frames:
                chunk = json.loads(frame)
                if chunk.get("error_code", 0):
                    print()
                    print(f"error {chunk['error_code']}: {chunk.get('text', '')}", file=sys.stderr)
                    return 1
                text = chunk.get("text", "")
                print(text[len(shown) :] if text.startswith(shown) else text, end="", flush=True)
                shown = text
        rest = splitter.rest()
        if rest:
            text = json.loads(rest).get("text", "")
            print(text[len(shown) :] if text.startswith(shown) else text, end="")
    print(flush=True)
    return 0


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    controller = args.controller_address.rstrip("/")
    try:
        with httpx.Client(timeout=httpx.Timeout(100.0, connect=10.0)) as client:
            worker = args.worker_address or _worker_address(client, controller, args.model_name)
            return _stream(client, worker.rstrip("/"), args)
    except NoWorker as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        raise CamelChatError(f"request failed: {exc}") from exc


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(_run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
