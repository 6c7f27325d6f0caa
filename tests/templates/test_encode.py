"""Segment encoding: ids and labels come together, labels cover exactly the replies and
their end-of-turn, on the tiny tokenizer and on the real LLaMA and Qwen tokenizers."""

from __future__ import annotations

import random
from typing import Any

import pytest
from sample_conversations import random_conversation

from camel_chat.conversation import Conversation
from camel_chat.templates import IGNORE_INDEX, SegmentEncoder, get_template, list_templates, render


def trained_text(encoder: SegmentEncoder, template_name: str, conv: Conversation) -> tuple[str, str]:
    segments = render(get_template(template_name), conv, special=encoder.special)
    encoded = encoder.encode(segments)
    assert len(encoded.input_ids) == len(encoded.labels)
    labelled = [t for t in encoded.labels if t != IGNORE_INDEX]
    expected = "".join(s.text for s in segments if s.trainable)
    return encoder.tokenizer.decode(labelled), expected


@pytest.mark.parametrize("name", list_templates())
def test_labels_are_exactly_the_trainable_segments(name: str, tiny_tokenizer: Any) -> None:
    encoder = SegmentEncoder(tiny_tokenizer)
    rng = random.Random(name)
    for _ in range(30):
        got, expected = trained_text(encoder, name, random_conversation(rng))
        assert got == expected


def test_vicuna_mask_on_real_llama_tokenizer_multi_turn(llama_sp_tokenizer: Any) -> None:
    # FastChat's string-offset masking zeroes every multi-turn sample with non-legacy
    # LLaMA tokenizers (spec §5.3); segment encoding cannot drift.
    encoder = SegmentEncoder(llama_sp_tokenizer)
    assert encoder.dummy_prefix
    conv = Conversation.of(
        ("user", "What is 2+2?"), ("assistant", "It is 4."), ("user", "And 3+3?"), ("assistant", "It is 6.")
    )
    segments = render(get_template("vicuna_v1.1"), conv, special=encoder.special)
    encoded = encoder.encode(segments)
    assert encoded.input_ids[0] == llama_sp_tokenizer.bos_token_id
    eos = llama_sp_tokenizer.eos_token_id
    assert encoded.input_ids.count(eos) == 2
    trained = [t for t in encoded.labels if t != IGNORE_INDEX]
    assert trained.count(eos) == 2
    assert llama_sp_tokenizer.decode(trained, skip_special_tokens=True).replace("  ", " ").strip() == (
        "It is 4. It is 6."
    )
    # Each reply is learnt as "▁It ▁is ..." right after "ASSISTANT:", as in the original data.
    pieces = llama_sp_tokenizer.convert_ids_to_tokens(trained)
    assert pieces[0] == "▁It"


def test_vicuna_segments_equal_legacy_whole_string_tokenization(llama_sp_tokenizer: Any) -> None:
    # The original models were trained on the legacy tokenization of the whole string,
    # where "</s>USER" becomes "</s>", "▁USER". Segment encoding reproduces it.
    encoder = SegmentEncoder(llama_sp_tokenizer)
    conv = Conversation.of(
        ("user", "Hi there"), ("assistant", "Hello!"), ("user", "Bye"), ("assistant", "Ciao")
    )
    segments = render(get_template("vicuna_v1.1"), conv, special=encoder.special)
    ids = encoder.encode(segments).input_ids
    tokens = llama_sp_tokenizer.convert_ids_to_tokens(ids)
    text_tokens = [t for t in tokens if t not in ("<s>", "</s>")]
    # Every word-initial piece carries exactly one "▁": no stray "▁" tokens at boundaries.
    assert "▁" not in text_tokens
    after_eos = tokens.index("</s>") + 1
    user_header = llama_sp_tokenizer.convert_ids_to_tokens(
        llama_sp_tokenizer("USER:", add_special_tokens=False)["input_ids"]
    )
    assert tokens[after_eos : after_eos + len(user_header)] == user_header
    assert user_header[0].startswith("▁")  # "</s>▁USER", as the legacy tokenizer had it


def test_chatml_segments_equal_whole_string_on_qwen(qwen2_tokenizer: Any) -> None:
    encoder = SegmentEncoder(qwen2_tokenizer)
    assert not encoder.dummy_prefix
    rng = random.Random(3)
    for _ in range(20):
        conv = random_conversation(rng)
        segments = render(get_template("chatml"), conv, special=encoder.special)
        whole = qwen2_tokenizer("".join(s.text for s in segments), add_special_tokens=False)["input_ids"]
        assert encoder.encode(segments).input_ids == whole


@pytest.mark.parametrize("fixture", ["tiny_tokenizer", "llama_sp_tokenizer", "qwen2_tokenizer"])
def test_count_texts_equals_encoded_lengths(fixture: str, request: pytest.FixtureRequest) -> None:
    encoder = SegmentEncoder(request.getfixturevalue(fixture))
    rng = random.Random(fixture)
    texts = [random_conversation(rng).messages[0].content for _ in range(50)] + ["", " ", "</s>x<s>"]
    assert encoder.count_texts(texts) == [len(ids) for ids in encoder.encode_texts(texts)]
