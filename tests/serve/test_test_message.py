"""`python -m camel_chat.serve.test_message` against a real controller and model_worker (tiny
vicuna_v1.1 checkpoint) started as processes on free ports; both are stopped in a `finally`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

MODEL = "Tiny-Vicuna"
START_TIMEOUT = 90.0
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "NO_PROXY": "*", "no_proxy": "*"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(check: object, proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            if check():  # type: ignore[operator]
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{what} not ready after {START_TIMEOUT:.0f}s:\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    from transformers import AutoTokenizer

    from camel_chat.model.checkpoint import write_template_files
    from camel_chat.model.tiny import save_tiny

    root = tmp_path_factory.mktemp("test_message")
    checkpoint = save_tiny(root / "tiny-vicuna", max_length=256)
    write_template_files(checkpoint, AutoTokenizer.from_pretrained(checkpoint), "vicuna_v1.1")
    c_port, w_port = free_port(), free_port()
    controller, worker = f"http://127.0.0.1:{c_port}", f"http://127.0.0.1:{w_port}"
    py = [sys.executable, "-m"]
    commands = {
        "controller": [*py, "camel_chat.serve.controller", "--host", "127.0.0.1", "--port", str(c_port)],
        "worker": [
            *py, "camel_chat.serve.model_worker", "--host", "127.0.0.1", "--port", str(w_port),
            "--worker-address", worker, "--controller-address", controller,
            "--model-path", str(checkpoint), "--model-names", MODEL, "--device", "cpu",
        ],
    }  # fmt: skip
    procs: list[subprocess.Popen[bytes]] = []
    logs = {name: root / f"{name}.log" for name in commands}
    try:
        for name, command in commands.items():
            with logs[name].open("wb") as log:
                procs.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=ENV))
        _wait(
            lambda: (
                MODEL in httpx.post(f"{controller}/list_models", timeout=2, trust_env=False).json()["models"]
            ),
            procs[1],
            logs["worker"],
            "worker registration",
        )
        yield controller, worker
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def run_test_message(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "camel_chat.serve.test_message", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )


def test_prints_the_streamed_reply_via_the_controller(stack: tuple[str, str]) -> None:
    controller, worker = stack
    done = run_test_message(
        "--controller-address",
        controller,
        "--model-name",
        MODEL,
        "--message",
        "Hello!",
        "--max-new-tokens",
        "16",
    )
    assert done.returncode == 0, done.stderr
    assert f"Models: ['{MODEL}']" in done.stdout
    assert f"worker_addr: {worker}" in done.stdout
    assert "USER: Hello!" in done.stdout
    reply = done.stdout.split("ASSISTANT: ", 1)[1]
    assert reply.strip(), done.stdout


def test_worker_address_bypasses_the_controller(stack: tuple[str, str]) -> None:
    _, worker = stack
    done = run_test_message(
        "--controller-address", "http://127.0.0.1:9", "--worker-address", worker,
        "--model-name", MODEL, "--max-new-tokens", "8",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Models:" not in done.stdout
    assert done.stdout.split("ASSISTANT: ", 1)[1].strip()


def test_unknown_model_exits_non_zero_naming_the_models(stack: tuple[str, str]) -> None:
    controller, _ = stack
    done = run_test_message("--controller-address", controller, "--model-name", "no-such-model")
    assert done.returncode == 1
    assert "no worker serves model 'no-such-model'" in done.stderr
    assert MODEL in done.stderr


def test_unreachable_controller_is_one_line_exit_2() -> None:
    done = run_test_message("--controller-address", f"http://127.0.0.1:{free_port()}", "--model-name", MODEL)
    assert done.returncode == 2
    assert done.stderr.startswith("error: request failed")
