"""Controller + model_worker + OpenAI API server as real processes on free loopback ports, for
any checkpoint and model name (`serving_stack.serving_stack` fixes both; the evaluation tests need
their own), with extra worker flags. Every process started is stopped when the block ends.

    with api_stack(tmp, checkpoint, "Tiny", worker_args=["--conv-template", "chatml"]) as stack:
        httpx.post(f"{stack.api}/v1/completions", ...)
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from serving_stack import Stack, free_port, healthy, registered, start, stop, wait_until

API_KEY = "eval-key"


@contextmanager
def api_stack(
    root: Path,
    checkpoint: Path,
    model: str,
    *,
    worker_args: Sequence[str] = (),
    api_key: str = API_KEY,
) -> Iterator[Stack]:
    """Start the three processes (the worker serving `checkpoint` as `model`), wait until the
    worker is registered and the API server healthy, yield their addresses."""
    c_port, w_port, a_port = free_port(), free_port(), free_port()
    controller, worker = f"http://127.0.0.1:{c_port}", f"http://127.0.0.1:{w_port}"
    api = f"http://127.0.0.1:{a_port}"
    py = [sys.executable, "-m"]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ctl = start([*py, "camel_chat.serve.controller", "--host", "127.0.0.1", "--port", str(c_port)],
                    root / "controller.log", procs)  # fmt: skip
        wait_until(lambda: healthy(f"{controller}/health"), ctl, root / "controller.log", "controller")
        wrk = start([
            *py, "camel_chat.serve.model_worker", "--host", "127.0.0.1", "--port", str(w_port),
            "--worker-address", worker, "--controller-address", controller,
            "--model-path", str(checkpoint), "--model-names", model, "--device", "cpu", *worker_args,
        ], root / "worker.log", procs)  # fmt: skip
        wait_until(lambda: healthy(f"{worker}/health"), wrk, root / "worker.log", "model_worker")
        wait_until(lambda: registered(controller, model), wrk, root / "worker.log", "worker registration")
        srv = start([
            *py, "camel_chat.serve.openai_api_server", "--host", "127.0.0.1", "--port", str(a_port),
            "--controller-address", controller, "--api-keys", api_key,
        ], root / "api.log", procs)  # fmt: skip
        wait_until(lambda: healthy(f"{api}/health"), srv, root / "api.log", "openai_api_server")
        yield Stack(controller, worker, api, checkpoint)
    finally:
        stop(procs)
