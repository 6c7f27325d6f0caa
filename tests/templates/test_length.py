"""`LengthModel` predicts the exact token length of any piece of a conversation."""

from __future__ import annotations

import random
from typing import Any

import pytest
from sample_conversations import random_conversation

from camel_chat.conversation import Conversation, to_sharegpt
from camel_chat.data_preprocessing.split import prepare_all
from camel_chat.data_preprocessing.tally import Tally
from camel_chat.templates import SegmentEncoder, get_template, list_templates, render
from camel_chat.templates.counting import TokenCounter, choose_counter
from camel_chat.templates.length import LengthModel


def check_pieces(
    tokenizer: Any, name: str, seed: int, n: int = 25, counter: TokenCounter | None = None
) -> None:
    """Every piece [start, end) of n random conversations: predicted length == len(encode(render))."""
    encoder = SegmentEncoder(tokenizer)
    model = LengthModel(get_template(name), encoder, counter)
    rng = random.Random(seed)
    convs = [random_conversation(rng) for _ in range(n)]
    prepared = prepare_all([to_sharegpt(c) for c in convs], model, Tally("t"))
    for conv, prep in zip(convs, prepared, strict=True):
        pairs = len(prep.pair_rest)
        for start in range(pairs):
            for end in range(start + 1, pairs + 1):
                piece = Conversation(conv.messages[2 * start : 2 * end], conv.system)
                actual = len(encoder.encode(render(model.template, piece, special=encoder.special)).input_ids)
                predicted = prep.pair_first[start] + sum(prep.pair_rest[start + 1 : end])
                assert predicted == actual, (name, start, end)


@pytest.mark.parametrize("name", list_templates())
def test_length_model_is_exact_on_tiny_tokenizer(name: str, tiny_tokenizer: Any) -> None:
    check_pieces(tiny_tokenizer, name, seed=1)


@pytest.mark.parametrize("name", ["vicuna_v1.1", "llama-2", "one_shot"])
def test_length_model_is_exact_on_llama_tokenizer(name: str, llama_sp_tokenizer: Any) -> None:
    check_pieces(llama_sp_tokenizer, name, seed=2, n=10)


@pytest.mark.parametrize("name", ["chatml", "vicuna_v1.1"])
def test_length_model_is_exact_on_qwen_tokenizer(name: str, qwen2_tokenizer: Any) -> None:
    check_pieces(qwen2_tokenizer, name, seed=3, n=10)


@pytest.mark.parametrize("name", ["vicuna_v1.1", "llama-2", "one_shot", "chatml"])
def test_length_model_is_exact_with_sentencepiece_counts(name: str, llama_sp_tokenizer: Any) -> None:
    # The lengths merge.py uses (sentencepiece counts for this tokenizer) against the HF
    # tokenizer's encode(render(piece)).
    pytest.importorskip("sentencepiece")
    counter = choose_counter(llama_sp_tokenizer)
    assert counter.name == "sentencepiece"
    check_pieces(llama_sp_tokenizer, name, seed=4, n=15, counter=counter)
    assert getattr(counter, "disabled", None) is None  # it did not fall back on the way
