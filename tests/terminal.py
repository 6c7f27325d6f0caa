"""The real terminal chat in a private tmux server, driven as a person would (send-keys,
capture-pane): used by the CLI tests on tiny checkpoints and on SmolLM2.

    term = Tmux(cli_command(checkpoint, "--max-new-tokens", "16"), cwd, CLI_ENV)
    term.wait_prompt(1); term.type("hello"); screen = term.wait_prompt(2); term.close()
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest


class Tmux:
    """One CLI run in a private tmux server (fixed size); killed in `close`."""

    def __init__(self, command: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.socket = f"camel-cli-{uuid.uuid4().hex[:8]}"
        self.name = "chat"
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        script = f"cd {shlex.quote(str(cwd))} && env {exports} {shlex.join(command)}; echo EXIT:$?; sleep 120"
        self._tmux("new-session", "-d", "-s", self.name, "-x", "160", "-y", "50", "bash", "-c", script)

    def _tmux(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True, timeout=10
        ).stdout

    def send(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", self.name, *keys)

    def type(self, line: str) -> None:
        self._tmux("send-keys", "-t", self.name, "-l", line)
        self.send("Enter")

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-J", "-S", "-3000", "-t", self.name)

    def wait(self, check: Callable[[str], bool], what: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if check(text):
                return text
            if time.monotonic() > deadline or "EXIT:" in text:
                raise AssertionError(f"timed out waiting for {what}; screen:\n{text}")
            time.sleep(0.05)

    def wait_prompt(self, count: int, timeout: float = 30.0) -> str:
        """Until the `count`-th USER prompt is shown and waiting (the last line)."""

        def ready(text: str) -> bool:
            lines = [line for line in text.splitlines() if line.strip()]
            return sum(line.startswith("USER:") for line in lines) >= count and lines[-1].rstrip() == "USER:"

        return self.wait(ready, f"prompt #{count}", timeout)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10)


needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def cli_command(checkpoint: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "camel_chat.serve.cli",
        "--model-path",
        str(checkpoint),
        "--device",
        "cpu",
        *extra,
    ]


REPO = str(Path(__file__).resolve().parents[1])
CLI_ENV = {
    "OMP_NUM_THREADS": "1",
    "PYTHONUNBUFFERED": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "PATH": os.environ.get("PATH", ""),
    "TERM": "xterm-256color",
    "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]),
}
