"""`python -m camel_chat.serve.test_message` against a real controller and model_worker (tiny
vicuna_v1.1 checkpoint) started as processes on free ports; both are stopped in a `finally`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from serving_stack import ENV, MODEL, free_port, serving_stack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    with serving_stack(tmp_path_factory.mktemp("test_message")) as running:
        yield running.controller, running.worker


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
