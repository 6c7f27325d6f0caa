"""A few damaged inputs through the real entry points as subprocesses: the exit code is the one
a shell sees, stderr has one error line, and no traceback (the in-process harness proves the
rest; merge and convert are run this way in tests/test_json_input.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO, timeout=300)


def one_error_line(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def test_kagentbench_score_with_damaged_eval_lines(tmp_path: Path) -> None:
    good = {"id": "f1", "type": "profile", "golden_result_list": [{"golden_result": "a bot"}]}
    (tmp_path / "eval.jsonl").write_bytes(
        json.dumps(good).encode() + b'\n{"id": "f2", "type": "profile"}\n"\xff"\n' + b"[" * 100_000 + b"\n"
    )
    (tmp_path / "pred.jsonl").write_text(
        json.dumps({**good, "model_predict": "a bot"})
        + "\n"
        + json.dumps({"id": "f2", "type": "profile", "model_predict": "x"})
        + "\n"
    )
    proc = run(
        "-m",
        "camel_chat.evaluation.kagentbench",
        "score",
        str(tmp_path / "eval.jsonl"),
        str(tmp_path / "pred.jsonl"),
    )
    assert proc.returncode == 2
    one_error_line(proc, "pred.jsonl", "profile: 1 eval records but 2 predictions")
    for rule in ("malformed-record", "invalid-utf8", "too-deep"):
        assert rule in proc.stderr  # each dropped line counted by its rule


def test_generate_roleplay_with_an_undecodable_role_list(tmp_path: Path) -> None:
    (tmp_path / "roles.txt").write_bytes(b"Chef\n\x80Accountant\n")
    (tmp_path / "tasks.txt").write_text("Cook.\n")
    args = ["--model", "m", "--out-dir", str(tmp_path / "out"), "--tasks", str(tmp_path / "tasks.txt")]
    args += ["--assistant-roles", str(tmp_path / "roles.txt"), "--user-roles", str(tmp_path / "roles.txt")]
    proc = run("-m", "camel_chat.data_preprocessing.generate_roleplay", *args)
    assert proc.returncode == 2
    one_error_line(proc, "roles.txt", "byte 0x80 at offset 5")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_train_with_a_config_of_the_wrong_types(tmp_path: Path, tiny_llama_dir: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(f"model_name_or_path: {tiny_llama_dir}\ndata_path: [1, 2]\noutput_dir: {tmp_path}/o\n")
    proc = run("-m", "camel_chat.train.train", "--config", str(config))
    assert proc.returncode == 2
    one_error_line(proc, "run.yaml", "data_path")
