"""Fixtures shared by the packing tests: tokenized random conversations and tiny models."""

from __future__ import annotations

import random
from typing import Any

import pytest
from sample_conversations import random_conversation

from camel_chat.conversation import to_sharegpt
from camel_chat.templates import Encoded, get_template
from camel_chat.train.dataset import TokenizeTally, tokenize_conversations


@pytest.fixture(scope="module")
def samples(tiny_tokenizer: Any) -> list[Encoded]:
    rng = random.Random(0)
    records = [to_sharegpt(random_conversation(rng)) for _ in range(14)]
    tally = TokenizeTally("test")
    out = tokenize_conversations(records, tiny_tokenizer, get_template("vicuna_v1.1"), 200, tally, False)
    assert len(out) == 14
    return out


@pytest.fixture(scope="module")
def models(tiny_tokenizer: Any) -> dict[str, Any]:
    from camel_chat.model.tiny import build_tiny_model

    return {arch: build_tiny_model(arch, tiny_tokenizer) for arch in ("llama", "qwen2")}
