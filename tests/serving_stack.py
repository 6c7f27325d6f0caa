"""Real serving processes for the end-to-end tests: a tiny vicuna_v1.1 checkpoint, a controller,
a model_worker and optionally the OpenAI API server and the Gradio web UI, on free loopback ports.

`serving_stack(root, ...)` starts them, waits until each is healthy (the worker registered), and
stops every process it started when the `with` block ends (terminate, wait, kill).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

MODEL = "Tiny-Vicuna"
START_TIMEOUT = 120.0
ENV = {
    **os.environ,
    "PYTHONUNBUFFERED": "1",
    "OMP_NUM_THREADS": "1",
    "NO_PROXY": "*",
    "no_proxy": "*",
    "GRADIO_ANALYTICS_ENABLED": "False",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_until(check: Callable[[], bool], proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    """Poll `check` until it is true; fail with the log's tail if the process dies or time runs out."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}:\n{tail(log)}")
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{what} not ready after {START_TIMEOUT:.0f}s:\n{tail(log)}")


def healthy(url: str) -> bool:
    return httpx.get(url, timeout=2, trust_env=False).status_code == 200


def registered(controller: str, model: str = MODEL) -> bool:
    answer = httpx.post(f"{controller}/list_models", timeout=2, trust_env=False)
    return model in answer.json().get("models", [])


def write_checkpoint(out: Path, context_length: int = 256) -> Path:
    """A tiny random LLaMA carrying our vicuna_v1.1 template and metadata."""
    from transformers import AutoTokenizer

    from camel_chat.model.checkpoint import write_template_files
    from camel_chat.model.tiny import save_tiny

    save_tiny(out, arch="llama", max_length=context_length)
    write_template_files(out, AutoTokenizer.from_pretrained(out), "vicuna_v1.1")
    return out


def start(command: list[str], log: Path, procs: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:
        procs.append(subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=ENV))
    return procs[-1]


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@dataclass
class Stack:
    controller: str
    worker: str
    api: str | None
    checkpoint: Path
    web: str | None = None


@contextmanager
def serving_stack(
    root: Path,
    *,
    context_length: int = 256,
    api_keys: str | None = None,
    worker_args: Sequence[str] = (),
    api_args: Sequence[str] = (),
    checkpoint: Path | None = None,
    model: str = MODEL,
    web_args: Sequence[str] | None = None,
) -> Iterator[Stack]:
    """Controller + model_worker (+ the OpenAI API server when `api_keys` is given, "" for no auth;
    + the Gradio web UI on the controller when `web_args` is given, [] for no extra flags),
    serving `checkpoint` as `model` (default: a tiny random vicuna_v1.1 checkpoint written under
    root). `worker_args`, `api_args` and `web_args` are extra flags for those processes."""
    if checkpoint is None:
        checkpoint = write_checkpoint(root / "tiny-vicuna", context_length)
    c_port, w_port = free_port(), free_port()
    controller, worker = f"http://127.0.0.1:{c_port}", f"http://127.0.0.1:{w_port}"
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
        web = gui = None
        if web_args is not None:  # started while the worker loads: the UI reads the models per page load
            g_port = free_port()
            web = f"http://127.0.0.1:{g_port}"
            gui = start([
                *py, "camel_chat.serve.gradio_web_server", "--host", "127.0.0.1", "--port", str(g_port),
                "--controller-url", controller, "--model-list-mode", "reload", *web_args,
            ], root / "web.log", procs)  # fmt: skip
        wait_until(lambda: healthy(f"{worker}/health"), wrk, root / "worker.log", "model_worker")
        wait_until(lambda: registered(controller, model), wrk, root / "worker.log", "worker registration")
        api = None
        if api_keys is not None:
            a_port = free_port()
            api = f"http://127.0.0.1:{a_port}"
            srv = start([
                *py, "camel_chat.serve.openai_api_server", "--host", "127.0.0.1", "--port", str(a_port),
                "--controller-address", controller, "--api-keys", api_keys, *api_args,
            ], root / "api.log", procs)  # fmt: skip
            wait_until(lambda: healthy(f"{api}/health"), srv, root / "api.log", "openai_api_server")
        if gui is not None:
            wait_until(lambda: healthy(str(web)), gui, root / "web.log", "gradio_web_server")
        yield Stack(controller, worker, api, checkpoint, web)
    finally:
        stop(procs)
