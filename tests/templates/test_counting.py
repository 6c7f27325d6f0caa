"""Token counters: the sentencepiece backend gives the Hugging Face counts exactly, or steps aside."""

from __future__ import annotations

import io
import itertools
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
from sample_conversations import random_text

from camel_chat.templates import SegmentEncoder, counting
from camel_chat.templates.counting import RustCounter, SentencePieceCounter, choose_counter

pytest.importorskip("sentencepiece")

SUFFIXES = ["", "</s>", " </s>", "</s></s>", "<s>x", "  ", " ", "\n    return x</s>"]


def awkward_texts(seed: int, n: int) -> list[str]:
    """Random texts (leading/trailing/double spaces, unicode, fake specials) plus code."""
    rng = random.Random(seed)
    texts = [rng.choice(["", " ", "  "]) + random_text(rng) + rng.choice(SUFFIXES) for _ in range(n)]
    return [*texts, "def f(x):\n    return x * 2\n", "a\u00a0b", "a\u3000b", "\ufeffx", "</s>", "x"]


def hf_counts(tokenizer: Any, texts: list[str]) -> list[int]:
    """The reference: the transformers tokenizer call the training encoder makes."""
    return [len(ids) for ids in SegmentEncoder(tokenizer).encode_texts(texts)]


def test_llama_tokenizer_gets_sentencepiece_with_the_hf_counts(llama_sp_tokenizer: Any) -> None:
    notes: list[str] = []
    counter = choose_counter(llama_sp_tokenizer, note=notes.append)
    assert counter.name == "sentencepiece", notes
    texts = awkward_texts(0, 3000)
    assert counter.count(texts) == hf_counts(llama_sp_tokenizer, texts)
    assert isinstance(counter, SentencePieceCounter) and counter.disabled is None, notes
    # Both routes were taken: most texts by sentencepiece, the awkward ones by Rust.
    routed = [counter.route(t) is not None for t in texts]
    assert 0.1 < sum(routed) / len(texts) < 0.9
    # Where sentencepiece counts, its ids (not only their number) are the HF ids.
    own = [t for t, r in zip(texts, routed, strict=True) if r]
    assert counter.ids(own) == SegmentEncoder(llama_sp_tokenizer).encode_texts(own)


def test_non_sentencepiece_tokenizers_get_rust(qwen2_tokenizer: Any, tiny_tokenizer: Any) -> None:
    for tokenizer in (qwen2_tokenizer, tiny_tokenizer):
        notes: list[str] = []
        counter = choose_counter(tokenizer, note=notes.append)
        assert counter.name == "rust"
        assert "no tokenizer.model" in notes[0]
        texts = awkward_texts(1, 300)
        assert counter.count(texts) == hf_counts(tokenizer, texts)


def _tiny_sentencepiece_model() -> bytes:
    """A real SentencePiece model trained here: same format, different vocabulary."""
    import sentencepiece

    rng = random.Random(0)
    lines = [random_text(rng) for _ in range(2000)]
    out = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=out, vocab_size=300, model_type="bpe", minloglevel=2
    )
    return out.getvalue()


@pytest.fixture(scope="module")
def mismatched_tokenizer(real_tokenizer_dirs: dict[str, Path], tmp_path_factory: Any) -> Any:
    """The LLaMA tokenizer folder with a tokenizer.model that is not its own."""
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("mismatched") / "llama-sp"
    shutil.copytree(real_tokenizer_dirs["llama-sp"], folder)
    (folder / "tokenizer.model").write_bytes(_tiny_sentencepiece_model())
    return AutoTokenizer.from_pretrained(folder)


def test_disagreeing_sentencepiece_model_falls_back_at_start(mismatched_tokenizer: Any) -> None:
    notes: list[str] = []
    counter = choose_counter(mismatched_tokenizer, note=notes.append)
    assert counter.name == "rust"
    assert "ids differ from the Hugging Face tokenizer" in notes[0]
    texts = awkward_texts(2, 200)
    assert counter.count(texts) == hf_counts(mismatched_tokenizer, texts)


def test_disagreement_on_the_data_sample_falls_back(
    mismatched_tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Probes that happen to agree (none at all): the sample of the real texts must catch it.
    monkeypatch.setattr(counting, "PROBES", ())
    notes: list[str] = []
    counter = choose_counter(mismatched_tokenizer, note=notes.append)
    assert isinstance(counter, SentencePieceCounter)
    texts = awkward_texts(3, 500)
    assert counter.count(texts) == hf_counts(mismatched_tokenizer, texts)
    assert counter.disabled is not None and "sentencepiece disabled" in notes[0]
    assert counter.count(texts[:10]) == hf_counts(mismatched_tokenizer, texts[:10])


@pytest.mark.parametrize("threads", [1, 2, 3, 7])
def test_rust_counter_slices_keep_order(threads: int, llama_sp_tokenizer: Any) -> None:
    texts = awkward_texts(5, 400)
    counter = RustCounter(llama_sp_tokenizer, threads=threads)
    assert counter.count(texts) == hf_counts(llama_sp_tokenizer, texts)
    bounds = counting._balanced_bounds(texts, threads)
    assert bounds[0] == 0 and bounds[-1] == len(texts) and len(bounds) - 1 <= threads
    sizes = [sum(map(len, texts[a:b])) for a, b in itertools.pairwise(bounds)]
    assert max(sizes) - min(sizes) <= 2 * max(map(len, texts))  # balanced by characters


CODE = ["def f(x):\n    return x * 2\n", "if a:\n        b()\n  c", "x  y   z    w", "tab\t  x"]


def test_merge_ranks_are_taken_from_the_hf_tokenizer(llama_sp_tokenizer: Any) -> None:
    import sentencepiece

    hf_ids = SegmentEncoder(llama_sp_tokenizer).encode_texts(CODE)
    processor, aligned = counting.load_processor(llama_sp_tokenizer)
    assert aligned and processor.encode(CODE) == hf_ids
    # The .model's own scores rank the whitespace runs last: indented code differs.
    plain = sentencepiece.SentencePieceProcessor(model_file=str(counting._model_file(llama_sp_tokenizer)))
    assert plain.encode(CODE) != hf_ids


def test_without_protobuf_space_runs_go_to_rust(
    llama_sp_tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    import sentencepiece

    # `from sentencepiece import sentencepiece_model_pb2` fails, as without protobuf.
    monkeypatch.delattr(sentencepiece, "sentencepiece_model_pb2", raising=False)
    monkeypatch.setitem(sys.modules, "sentencepiece.sentencepiece_model_pb2", None)
    counter = choose_counter(llama_sp_tokenizer)
    assert isinstance(counter, SentencePieceCounter) and not counter.space_runs
    assert all(counter.route(t) is None for t in CODE[:3])
    texts = awkward_texts(6, 500) + CODE
    assert counter.count(texts) == hf_counts(llama_sp_tokenizer, texts)
    assert counter.disabled is None


def test_overlapping_added_tokens_are_split_as_hf_does(real_tokenizer_dirs: dict[str, Path]) -> None:
    from tokenizers import AddedToken
    from transformers import AutoTokenizer

    assert not counting._can_overlap(["<unk>", "<s>", "</s>"])
    assert counting._can_overlap(["<ab>", "b>x"]) and counting._can_overlap(["<a>", "x<a>y"])
    tokenizer = AutoTokenizer.from_pretrained(real_tokenizer_dirs["llama-sp"])
    tokenizer.add_tokens([AddedToken(t, normalized=False) for t in ("<ab>", "b>x", "<tool>")])
    counter = choose_counter(tokenizer)
    assert isinstance(counter, SentencePieceCounter) and not counter._strip_tail
    texts = [
        f"{w}{end}"
        for w in ("hello", "x <ab", "a<tool>b", "q")
        for end in ("", "<ab>", "b>x", "<ab>x", "</s>")
    ]
    assert counter.count(texts) == hf_counts(tokenizer, texts)
    assert counter.disabled is None
