"""The model worker command: a checkpoint served with transformers (dynamic batching) over
FastChat's worker protocol, registered at a controller.

    python -m camel_chat.serve.model_worker --model-path path/to/checkpoint \\
        [--device cpu|cuda|mps] [--port 21002] [--controller-address http://localhost:21001] \\
        [--model-names a,b] [--conv-template vicuna_v1.1] [--limit-worker-concurrency 16] \\
        [--max-waiting 64] [--no-register]

The model is loaded by `camel_chat.model.loader`; its template comes from the checkpoint (our
metadata, else the tokenizer's chat_template, else the camel/vicuna path fallback), and
`--conv-template` overrides it. The engine is `hf_engine.TransformersEngine`, the app
`worker_app.make_app` (re-exported here with `WorkerSettings`).
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI

from camel_chat.errors import CamelChatError, run_command
from camel_chat.serve.worker_app import (
    DEFAULT_HEART_BEAT_INTERVAL,
    DEFAULT_LIMIT,
    DEFAULT_WAITING_PER_SLOT,
    ConcurrencyLimiter,
    WorkerSettings,
    make_app,
)

__all__ = ["ConcurrencyLimiter", "WorkerSettings", "add_worker_arguments", "build_parser", "main", "make_app"]

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------- command line


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every worker shares (FastChat's names)."""
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=21002)
    parser.add_argument(
        "--worker-address",
        default=None,
        help="URL the controller reaches us at (default http://<host>:<port>)",
    )
    parser.add_argument("--controller-address", default="http://localhost:21001")
    parser.add_argument("--model-path", required=True, help="checkpoint folder or Hub id")
    parser.add_argument(
        "--model-names", default=None, help="comma-separated names (default: the path's last part)"
    )
    parser.add_argument("--model-name", dest="model_names", help=argparse.SUPPRESS)  # camel_chat's spelling
    parser.add_argument(
        "--conv-template", default=None, help="template name overriding the one the checkpoint carries"
    )
    parser.add_argument(
        "--limit-worker-concurrency",
        "--limit-model-concurrency",
        type=int,
        default=DEFAULT_LIMIT,
        help=f"requests served at once; more wait (default {DEFAULT_LIMIT})",
    )
    parser.add_argument(
        "--max-waiting",
        type=int,
        default=None,
        help=f"requests that may wait for a slot; more are answered 429 + Retry-After "
        f"(default {DEFAULT_WAITING_PER_SLOT} x --limit-worker-concurrency)",
    )
    parser.add_argument("--no-register", action="store_true", help="do not register at the controller")
    parser.add_argument(
        "--heart-beat-interval",
        type=float,
        default=DEFAULT_HEART_BEAT_INTERVAL,
        help="seconds between heartbeats (env FASTCHAT_WORKER_HEART_BEAT_INTERVAL, default 5)",
    )
    parser.add_argument(
        "--controller-secret",
        default=os.environ.get("CAMEL_CHAT_CONTROLLER_SECRET"),
        help="shared secret for registration (env CAMEL_CHAT_CONTROLLER_SECRET)",
    )
    parser.add_argument("--ssl", action="store_true", help="serve HTTPS with env SSL_KEYFILE / SSL_CERTFILE")
    parser.add_argument("--debug", action="store_true", help="debug logging")


def settings_from_args(args: argparse.Namespace) -> WorkerSettings:
    if args.limit_worker_concurrency < 1:
        raise CamelChatError("--limit-worker-concurrency must be at least 1")
    if args.max_waiting is not None and args.max_waiting < 0:
        raise CamelChatError("--max-waiting must be 0 or more")
    address = args.worker_address
    if address is None:
        host = "localhost" if args.host in ("0.0.0.0", "::", "") else args.host
        address = f"{'https' if args.ssl else 'http'}://{host}:{args.port}"
    return WorkerSettings(
        worker_address=address,
        controller_address=args.controller_address,
        limit_worker_concurrency=args.limit_worker_concurrency,
        max_waiting=args.max_waiting,
        register=not args.no_register,
        heart_beat_interval=args.heart_beat_interval,
        retry_interval=min(5.0, args.heart_beat_interval),
        controller_secret=args.controller_secret,
    )


def serve(app: FastAPI, args: argparse.Namespace) -> None:
    """Run `app` with uvicorn on --host/--port (HTTPS with --ssl)."""
    import uvicorn

    ssl: dict[str, Any] = {}
    if args.ssl:
        ssl = {"ssl_keyfile": os.environ["SSL_KEYFILE"], "ssl_certfile": os.environ["SSL_CERTFILE"]}
    uvicorn.run(app, host=args.host, port=args.port, log_level="debug" if args.debug else "info", **ssl)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m camel_chat.serve.model_worker",
        description="Serve a checkpoint with transformers (dynamic batching), FastChat worker protocol.",
    )
    add_worker_arguments(parser)
    parser.add_argument(
        "--device", choices=("cpu", "cuda", "mps"), default=None, help="default: cuda if available"
    )
    parser.add_argument("--gpus", default=None, help='visible GPUs, e.g. "0,2" (sets CUDA_VISIBLE_DEVICES)')
    parser.add_argument("--num-gpus", type=int, default=1, help="split the model over this many GPUs")
    parser.add_argument(
        "--max-gpu-memory", default=None, help='per-GPU limit with --num-gpus > 1, e.g. "13GiB"'
    )
    parser.add_argument(
        "--dtype", default=None, help="float32, float16, bfloat16 or auto (default: cpu float32, else auto)"
    )
    quant = parser.add_mutually_exclusive_group()
    quant.add_argument("--load-8bit", action="store_true", help="8-bit weights (bitsandbytes)")
    quant.add_argument("--load-4bit", action="store_true", help="4-bit NF4 weights (bitsandbytes)")
    parser.add_argument("--cpu-offloading", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--trust-remote-code", action="store_true", help="run the checkpoint's own Python code"
    )
    parser.add_argument(
        "--max-batch-size", type=int, default=None, help="sequences decoded together (default: the limit)"
    )
    parser.add_argument(
        "--num-threads",
        type=int,
        default=None,
        help="torch CPU threads for the model (default: torch's; 1 is fastest for tiny models)",
    )
    parser.add_argument(
        "--stream-interval",
        type=int,
        default=2,
        help="stream a chunk every N new tokens, the first and the last always (FastChat's flag and default)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for requests that bring none")
    return parser


def _load_options(args: argparse.Namespace) -> dict[str, Any]:
    """Loader options from the device flags."""
    import torch

    if args.cpu_offloading:
        raise CamelChatError(
            "--cpu-offloading is not supported; use --num-gpus/--max-gpu-memory or --load-4bit"
        )
    if args.gpus:
        if len(args.gpus.split(",")) < args.num_gpus:
            raise CamelChatError(f"--gpus {args.gpus!r} lists fewer GPUs than --num-gpus {args.num_gpus}")
        os.environ["CUDA_VISIBLE_DEVICES"] = args.gpus
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise CamelChatError("--device cuda, but torch sees no CUDA device; pass --device cpu")
    options: dict[str, Any] = {
        "device": device,
        "dtype": args.dtype or ("float32" if device == "cpu" else "auto"),
        "bits": 8 if args.load_8bit else 4 if args.load_4bit else 16,
        "trust_remote_code": args.trust_remote_code,
    }
    if device == "cuda" and args.num_gpus > 1:
        options["device_map"] = "auto"
        if args.max_gpu_memory:
            options["max_memory"] = {i: args.max_gpu_memory for i in range(args.num_gpus)}
    return options


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO)
    settings = settings_from_args(args)
    if args.seed is not None:
        import random

        random.seed(args.seed)
    from camel_chat.serve.hf_engine import TransformersEngine

    engine = TransformersEngine.from_pretrained(
        args.model_path,
        model_names=args.model_names,
        conv_template=args.conv_template,
        max_batch_size=args.max_batch_size or settings.limit_worker_concurrency,
        num_threads=args.num_threads,
        stream_interval=args.stream_interval,
        **_load_options(args),
    )
    log.info(
        "serving %s (template %s) at %s", engine.model_names, engine.template_name, settings.worker_address
    )
    try:
        serve(make_app(engine, settings), args)
    finally:
        engine.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the worker; 2 on a bad flag or an unloadable model."""
    return run_command(_run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
