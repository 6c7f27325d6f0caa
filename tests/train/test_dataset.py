"""Training data: loading, the seeded split, masks on every template with the tiny and the real
tokenizers, drops and truncation counted, the tokenization cache, the debug view."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sample_conversations import random_conversation

from camel_chat.conversation import to_sharegpt
from camel_chat.errors import CamelChatError, DataError
from camel_chat.templates import (
    IGNORE_INDEX,
    Encoded,
    SegmentEncoder,
    SpecialTokens,
    get_template,
    list_templates,
    render_text,
)
from camel_chat.train.dataset import (
    SupervisedDataset,
    TokenizeTally,
    cache_key,
    describe_sample,
    load_conversations,
    record_conversation,
    split_train_eval,
    tokenize_conversations,
    tokenized_dataset,
    tokenizer_fingerprint,
)

TOKENIZERS = ["tiny_tokenizer", "llama_sp_tokenizer", "qwen2_tokenizer"]


def sharegpt(*turns: str, system: str | None = None, rid: str = "x") -> dict[str, Any]:
    """Alternating human/gpt turns."""
    head = [] if system is None else [{"from": "system", "value": system}]
    body = [{"from": "human" if i % 2 == 0 else "gpt", "value": t} for i, t in enumerate(turns)]
    return {"id": rid, "conversations": head + body}


def tokenize(records: list[Any], tokenizer: Any, template: str = "vicuna_v1.1", max_length: int = 4096):
    tally = TokenizeTally("test")
    samples = tokenize_conversations(records, tokenizer, get_template(template), max_length, tally, False)
    return samples, tally


def trained_spans(encoded: Encoded) -> list[list[int]]:
    """Maximal runs of trained token ids."""
    spans: list[list[int]] = []
    previous = False
    for token, label in zip(encoded.input_ids, encoded.labels, strict=True):
        trained = label != IGNORE_INDEX
        if trained:
            assert label == token  # a trained label is the token itself
            if not previous:
                spans.append([])
            spans[-1].append(token)
        previous = trained
    return spans


# --- loading and splitting -------------------------------------------------------------------


def test_load_conversations_reads_json_arrays_and_jsonl(tmp_path: Path) -> None:
    records = [sharegpt("hi", "hello", rid="a"), sharegpt("yo", "hey", rid="b")]
    (tmp_path / "d.json").write_text(json.dumps(records))
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    assert load_conversations(tmp_path / "d.json") == records
    assert load_conversations(str(tmp_path / "d.jsonl")) == records


def test_load_conversations_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing\.json: file not found"):
        load_conversations(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('[{"id": 1,}]')
    with pytest.raises(DataError, match=r"bad\.json \[record 0\]: malformed JSON"):  # names the record
        load_conversations(tmp_path / "bad.json")
    (tmp_path / "obj.json").write_text('{"conversations": []}')
    with pytest.raises(
        DataError, match=r"obj\.json: expected a JSON array of conversations, found a JSON dict"
    ):
        load_conversations(tmp_path / "obj.json")
    (tmp_path / "bad.jsonl").write_text('{"id": 1}\n{oops\n')
    with pytest.raises(DataError, match=r"bad.jsonl \[record line 2\]"):
        load_conversations(tmp_path / "bad.jsonl")


def test_split_is_the_seeds_split() -> None:
    records = list(range(1000))
    train, evals = split_train_eval(records)
    np.random.seed(0)  # the seed's code, verbatim
    perm = np.random.permutation(len(records))
    split = int(len(perm) * 0.98)
    assert train == [records[i] for i in perm[:split]]
    assert evals == [records[i] for i in perm[split:]]
    assert (len(train), len(evals)) == (980, 20)
    assert split_train_eval(records, 0.0) == (train + evals, [])
    assert split_train_eval(records, seed=1) != (train, evals)
    with pytest.raises(CamelChatError, match="--eval_ratio"):
        split_train_eval(records, 1.0)


# --- masks ---------------------------------------------------------------------------------


def mask_records(rng: random.Random) -> list[dict[str, Any]]:
    """Multi-turn conversations with marker words, plus the awkward texts of the template tests."""
    records = []
    for n in range(8):
        turns = []
        for k in range(rng.randint(1, 4)):
            turns += [f"question{n}x{k} please help", f"answer{n}x{k} here it is."]
        records.append(sharegpt(*turns, system=rng.choice([None, "", "You are terse."]), rid=f"m{n}"))
    records += [to_sharegpt(random_conversation(rng)) for _ in range(8)]
    return records


def normalise(text: str, dummy_prefix: bool) -> str:
    # SentencePiece decoding drops the dummy-prefix space and may re-space around special
    # tokens; byte-level tokenizers decode exactly.
    return " ".join(text.split()) if dummy_prefix else text


@pytest.mark.parametrize("template_name", list_templates())
@pytest.mark.parametrize("fixture", TOKENIZERS)
def test_labels_are_every_reply_with_its_end_of_turn_and_nothing_else(
    fixture: str, template_name: str, request: pytest.FixtureRequest
) -> None:
    tokenizer = request.getfixturevalue(fixture)
    template = get_template(template_name)
    special = SpecialTokens.of(tokenizer)
    records = mask_records(random.Random(template_name))
    if "{bos_token}" in template.user.prefix and not special.bos:
        with pytest.raises(CamelChatError, match=f"--template {template_name}: .*bos_token"):
            tokenize(records, tokenizer, template_name)
        return
    dummy_prefix = SegmentEncoder(tokenizer).dummy_prefix
    samples, tally = tokenize(records, tokenizer, template_name)
    assert tally.kept == len(records) == len(samples) and not tally.dropped
    for record, sample in zip(records, samples, strict=True):
        conv = record_conversation(record)
        replies = [m.content for m in conv.messages if m.role == "assistant"]
        spans = trained_spans(sample)
        # One trained span per reply (FastChat's offsets zero whole multi-turn samples instead).
        assert len(spans) == len(replies)
        for span, reply in zip(spans, replies, strict=True):
            expected = template.assistant.lead + reply + special.fill(template.trained_suffix)
            got = tokenizer.decode(span, skip_special_tokens=False)
            assert normalise(got, dummy_prefix) == normalise(expected, dummy_prefix)
        full = render_text(template, conv, special=special)
        if dummy_prefix:
            assert sample.input_ids[0] == tokenizer.bos_token_id or not template.bos
        else:  # byte-level: the ids spell exactly the rendered text
            assert tokenizer.decode(sample.input_ids, skip_special_tokens=False) == full
            if template_name == "chatml":  # and for ChatML they are the whole string's ids
                assert sample.input_ids == tokenizer(full, add_special_tokens=False)["input_ids"]
        untrained = tokenizer.decode(
            [t for t, label in zip(sample.input_ids, sample.labels, strict=True) if label == IGNORE_INDEX]
        )
        for message in conv.messages:
            if message.role == "user" and message.content.startswith("question"):
                assert message.content in untrained
                assert message.content.split()[0] not in tokenizer.decode([t for s in spans for t in s])


@pytest.mark.parametrize("fixture", TOKENIZERS)
def test_end_of_turn_token_is_trained_once_per_reply(fixture: str, request: pytest.FixtureRequest) -> None:
    tokenizer = request.getfixturevalue(fixture)
    records = [sharegpt("What is 2+2?", "It is 4.", "And 3+3?", "It is 6.", "Bye", "Bye!")]
    for template_name, end in (("vicuna_v1.1", tokenizer.eos_token), ("chatml", "<|im_end|>")):
        end_id = tokenizer.convert_tokens_to_ids(end)
        if end_id == tokenizer.unk_token_id:  # <|im_end|> is not a token of the LLaMA vocabulary
            continue
        (sample,), _ = tokenize(records, tokenizer, template_name)
        spans = trained_spans(sample)
        assert [span[-1] for span in spans] == [end_id] * 3
        assert sum(span.count(end_id) for span in spans) == 3


def test_llama_non_legacy_tokenizer_keeps_every_turn_of_long_conversations(llama_sp_tokenizer: Any) -> None:
    # Spec §5.3: with legacy=False FastChat's offsets run past the end and mask whole samples.
    assert llama_sp_tokenizer.legacy is False
    turns = [t for k in range(6) for t in (f"Question number {k}?", f"Answer number {k}.")]
    (sample,), tally = tokenize([sharegpt(*turns)], llama_sp_tokenizer)
    assert tally.kept == 1
    spans = trained_spans(sample)
    assert [llama_sp_tokenizer.decode(s) for s in spans] == [f"Answer number {k}.</s>" for k in range(6)]
    assert llama_sp_tokenizer.convert_ids_to_tokens(spans[0][:1]) == ["▁Answer"]


# --- drops, truncation, bad templates -------------------------------------------------------


def test_records_that_are_not_conversations_are_dropped_and_counted(tiny_tokenizer: Any) -> None:
    records = [
        sharegpt("hi", "hello", rid="ok"),
        sharegpt("hi", "hello", "unanswered", rid="trailing-user"),  # last user turn trimmed
        ["not", "a", "dict"],
        {"id": "nofield"},
        {"id": "badrole", "conversations": [{"from": "bot", "value": "x"}]},
        sharegpt("hi", "hello", rid="x") | {"conversations": [{"from": "gpt", "value": "x"}]},
        {
            "id": "twice",
            "conversations": sharegpt("a", "b")["conversations"][:1] + sharegpt("a", "b")["conversations"],
        },
        sharegpt("hi", "   ", rid="blank"),
        {"id": "empty", "conversations": []},
        sharegpt("only a question", rid="lonely"),
    ]
    samples, tally = tokenize(records, tiny_tokenizer)
    assert len(samples) == tally.kept == 2
    assert dict(tally.dropped) == {
        "not-an-object": 1,
        "missing-field": 1,
        "unknown-role": 1,
        "must-start-with-user": 1,
        "roles-must-alternate": 1,
        "empty-content": 1,
        "empty": 1,
        "must-end-with-assistant": 1,
    }
    assert tally.examples["unknown-role"] == ["record 4 (badrole) message 0"]
    assert tally.examples["not-an-object"] == ["record 2"]
    assert "dropped       1  must-end-with-assistant  (e.g. record 9 (lonely) message 0)" in tally.summary()


def test_long_samples_are_truncated_and_untrainable_ones_dropped(tiny_tokenizer: Any) -> None:
    long_reply = " ".join(["word"] * 400)
    records = [
        sharegpt("short question", long_reply, rid="long"),
        sharegpt(" ".join(["question"] * 400), "answer", rid="long-prompt"),
        sharegpt("hi", "hello", rid="fits"),
    ]
    samples, tally = tokenize(records, tiny_tokenizer, max_length=128)
    assert len(samples[0].input_ids) == 128
    assert all(len(s.input_ids) <= 128 and s.num_trainable > 0 for s in samples)
    assert tally.kept == 2 and tally.truncated == 2
    assert tally.dropped == {"no-trainable-tokens": 1}
    assert tally.examples["no-trainable-tokens"] == ["record 1 (long-prompt)"]
    assert tally.tokens == sum(len(s.input_ids) for s in samples)
    assert tally.trained_tokens == sum(s.num_trainable for s in samples)
    assert "truncated     2  longer than max_length (e.g. record 0 (long), record 1 (long-prompt))" in (
        tally.summary()
    )


def word_level_tokenizer(eos: str | None) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>", "hello", "hi"])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token=eos
    )


def test_a_template_the_tokenizer_cannot_encode_is_refused() -> None:
    records = [sharegpt("hello", "hi")]
    with pytest.raises(CamelChatError, match=r"--template vicuna_v1\.1: .*eos_token.*has none"):
        tokenize(records, word_level_tokenizer(eos=None))
    with pytest.raises(CamelChatError, match=r"--template vicuna_v1\.1: .*cannot encode the template text"):
        tokenize(records, word_level_tokenizer(eos="</s>"))


# --- the cache -----------------------------------------------------------------------------


def test_cache_hit_returns_the_same_samples_and_counts(
    tiny_tokenizer: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(5)
    records = [to_sharegpt(random_conversation(rng)) for _ in range(30)] + [{"id": "bad"}]
    data = tmp_path / "data.json"
    data.write_text(json.dumps(records))
    cache = tmp_path / "cache"
    first, tally1 = tokenized_dataset(data, records, tiny_tokenizer, "vicuna_v1.1", 64, cache)
    out = capsys.readouterr().out
    assert "wrote tokenized cache" in out and tally1.summary() in out
    assert tally1.kept == len(first) and tally1.dropped["missing-field"] == 1
    (path,) = cache.glob("tokenized-*.npz")
    second, tally2 = tokenized_dataset(data, records, tiny_tokenizer, "vicuna_v1.1", 64, cache)
    out = capsys.readouterr().out
    assert f"loaded tokenized cache {path}" in out and tally1.summary() in out
    assert second == first
    assert tally2.summary() == tally1.summary() and tally1.truncated > 0

    for damage in (path.read_bytes()[:200], b"not a zip file"):  # cut short; not even a zip
        path.write_bytes(damage)
        again, _ = tokenized_dataset(data, records, tiny_tokenizer, "vicuna_v1.1", 64, cache)
        assert "ignoring unreadable tokenized cache" in capsys.readouterr().out
        assert again == first
    assert load_ok(path, records, tiny_tokenizer)


def load_ok(path: Path, records: list[Any], tokenizer: Any) -> bool:
    from camel_chat.train.dataset import load_cache

    load_cache(path, cache_key(records, tokenizer, get_template("vicuna_v1.1"), 64))
    return True


def test_cache_key_changes_with_each_input(tiny_tokenizer: Any) -> None:
    records = [sharegpt("hi", "hello"), sharegpt("a", "b")]
    vicuna = get_template("vicuna_v1.1")
    key = cache_key(records, tiny_tokenizer, vicuna, 512)
    assert key == cache_key(copy.deepcopy(records), tiny_tokenizer, vicuna, 512)
    other_tokenizer = copy.deepcopy(tiny_tokenizer)
    other_tokenizer.add_tokens(["brandnewtoken"])
    assert tokenizer_fingerprint(other_tokenizer) != tokenizer_fingerprint(tiny_tokenizer)
    variants = [
        cache_key(records[:1], tiny_tokenizer, vicuna, 512),  # another split of the same file
        cache_key([sharegpt("hi", "hello!"), sharegpt("a", "b")], tiny_tokenizer, vicuna, 512),
        cache_key(records, other_tokenizer, vicuna, 512),
        cache_key(records, tiny_tokenizer, get_template("chatml"), 512),
        cache_key(records, tiny_tokenizer, vicuna, 511),
    ]
    assert len({key, *variants}) == 6


def test_no_sample_left_is_an_error_naming_the_file(tiny_tokenizer: Any, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data\.json: no conversation left to train on"):
        tokenized_dataset(tmp_path / "data.json", [{"id": 1}], tiny_tokenizer, "vicuna_v1.1", 64, None)
    with pytest.raises(CamelChatError, match="unknown template 'nope'"):
        tokenized_dataset(tmp_path / "data.json", [], tiny_tokenizer, "nope", 64, None)


# --- inspection and the torch dataset ------------------------------------------------------


@pytest.mark.parametrize("fixture", ["tiny_tokenizer", "llama_sp_tokenizer"])
def test_describe_sample_marks_the_trained_spans(fixture: str, request: pytest.FixtureRequest) -> None:
    tokenizer = request.getfixturevalue(fixture)
    (sample,), _ = tokenize([sharegpt("What is 2+2?", "It is 4.", "And 3+3?", "It is 6.")], tokenizer)
    text = describe_sample(sample, tokenizer)
    header, body = text.split("\n", 1)
    assert header.startswith(f"sample: {len(sample.input_ids)} tokens, {sample.num_trainable} trained")
    assert body.count("«") == body.count("»") == 2
    # (SentencePiece decoding puts a space after </s> and <s>: "</s>▁USER" is how it was trained)
    expected = "ASSISTANT:« It is 4.</s>»USER: And 3+3? ASSISTANT:« It is 6.</s>»"
    assert expected in body.replace("» ", "»")
    assert body.startswith("<s>A chat between") or body.startswith("<s> A chat between")


def test_supervised_dataset_items(tiny_tokenizer: Any) -> None:
    samples, _ = tokenize([sharegpt("hi", "hello"), sharegpt("a", "b")], tiny_tokenizer)
    dataset = SupervisedDataset(samples)
    assert len(dataset) == 2
    assert dataset[1] == {"input_ids": samples[1].input_ids, "labels": samples[1].labels}
