"""Splitting rules (spec §4.3 cases, with the seed's quirks fixed as design §2.7 says)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from camel_chat.conversation import from_sharegpt
from camel_chat.data_preprocessing.merge import merge
from camel_chat.data_preprocessing.split import Prepared, pairs_of, prepare_all, split
from camel_chat.data_preprocessing.tally import Tally
from camel_chat.templates import SegmentEncoder, get_template, render
from camel_chat.templates.length import LengthModel

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


def record(rid: str, pair_words: list[int], rng: random.Random | None = None) -> dict[str, Any]:
    rng = rng or random.Random(rid)
    turns = []
    for n in pair_words:
        turns.append({"from": "human", "value": " ".join(rng.choice(WORDS) for _ in range(n))})
        turns.append({"from": "gpt", "value": " ".join(rng.choice(WORDS) for _ in range(n))})
    return {"id": rid, "conversations": turns}


@pytest.fixture
def model(tiny_tokenizer: Any) -> LengthModel:
    return LengthModel(get_template("vicuna_v1.1"), SegmentEncoder(tiny_tokenizer))


def prep_one(rec: dict[str, Any], model: LengthModel) -> Prepared:
    (prep,) = prepare_all([rec], model, Tally("t"))
    return prep


def rendered_length(piece: dict[str, Any], model: LengthModel) -> int:
    segments = render(model.template, from_sharegpt(piece), special=model.encoder.special)
    return len(model.encoder.encode(segments).input_ids)


def test_fitting_conversation_is_one_piece(model: LengthModel) -> None:
    prep = prep_one(record("a", [3, 3, 3]), model)
    pieces = split(prep, 10_000, Tally("t"))
    assert [p["id"] for p in pieces] == ["a_0"]
    assert pieces[0]["conversations"] == prep.turns


def test_last_pair_is_not_dropped(model: LengthModel) -> None:
    # The seed's quirk (spec §4.3): overflow detected at the last pair dropped that pair.
    prep = prep_one(record("b", [6, 6]), model)
    budget = max(prep.pair_first)  # room for one pair, not two
    assert prep.pair_first[0] + prep.pair_rest[1] > budget
    pieces = split(prep, budget, Tally("t"))
    assert [p["id"] for p in pieces] == ["b_0", "b_2"]
    assert [t for p in pieces for t in p["conversations"]] == prep.turns


def test_pieces_split_on_pair_boundaries_and_fit(model: LengthModel) -> None:
    prep = prep_one(record("c", [4, 9, 2, 7, 3, 3, 8]), model)
    budget = prep.pair_first[0] + prep.pair_rest[1] + 5
    pieces = split(prep, budget, Tally("t"))
    assert len(pieces) > 1
    joined = [t for p in pieces for t in p["conversations"]]
    assert joined == prep.turns  # nothing lost, order kept
    for piece in pieces:
        assert len(piece["conversations"]) % 2 == 0
        assert piece["conversations"][0]["from"] == "human"
        assert rendered_length(piece, model) <= budget
        start = int(piece["id"].rsplit("_", 1)[1])
        assert prep.turns[start] == piece["conversations"][0]


def test_oversized_pair_is_reported_and_dropped_not_emitted(model: LengthModel) -> None:
    prep = prep_one(record("d", [3, 60, 3]), model)
    budget = prep.pair_first[0] + 10
    tally = Tally("t")
    pieces = split(prep, budget, tally)
    assert [p["id"] for p in pieces] == ["d_0", "d_4"]
    assert tally.dropped["pair-over-budget"] == 1
    assert "d turns 2-3" in tally.examples["pair-over-budget"][0]


def test_oversized_first_pair_leaves_no_empty_piece(model: LengthModel) -> None:
    prep = prep_one(record("e", [60, 3]), model)
    budget = prep.pair_first[1] + 1
    pieces = split(prep, budget, Tally("t"))
    assert [p["id"] for p in pieces] == ["e_2"]
    assert all(p["conversations"] for p in pieces)


def test_single_oversized_pair_yields_nothing(model: LengthModel) -> None:
    prep = prep_one(record("f", [60]), model)
    tally = Tally("t")
    assert split(prep, prep.pair_first[0] - 1, tally) == []
    assert tally.dropped["pair-over-budget"] == 1


def test_trailing_unpaired_turns_are_trimmed() -> None:
    rec = record("g", [2, 2])
    rec["conversations"].append({"from": "human", "value": "dangling"})
    _, turns = pairs_of(rec)
    assert len(turns) == 4
    # gpt,gpt ending from the CAMEL converter (more assistant than user messages)
    rec2 = record("h", [2])
    rec2["conversations"].append({"from": "gpt", "value": "extra"})
    assert len(pairs_of(rec2)[1]) == 2


@pytest.mark.parametrize(
    ("turns", "rule"),
    [
        ([{"from": "gpt", "value": "a"}, {"from": "human", "value": "b"}], "wrong-roles"),
        ([{"from": "human", "value": "a"}, {"from": "bard", "value": "b"}], "unknown-role"),
        ([{"from": "human", "value": " "}, {"from": "gpt", "value": "b"}], "empty-value"),
        ([{"from": "human", "value": "a"}], "too-short"),
    ],
)
def test_invalid_records_are_dropped_by_reason(
    turns: list[dict[str, str]], rule: str, model: LengthModel
) -> None:
    tally = Tally("t")
    assert prepare_all([{"id": "z", "conversations": turns}], model, tally) == []
    assert tally.dropped[rule] == 1
    assert tally.examples[rule][0].startswith("z: ")


def test_system_turn_is_repeated_in_every_piece(model: LengthModel) -> None:
    rec = record("s", [5, 5, 5])
    rec["conversations"].insert(0, {"from": "system", "value": "Be kind."})
    prep = prep_one(rec, model)
    budget = max(prep.pair_first)
    pieces = split(prep, budget, Tally("t"))
    assert len(pieces) >= 2
    for piece in pieces:
        assert piece["conversations"][0] == {"from": "system", "value": "Be kind."}
        assert rendered_length(piece, model) <= budget
    assert [t for p in pieces for t in p["conversations"][1:]] == prep.turns


def test_merge_is_deterministic_and_keeps_extra_keys(model: LengthModel) -> None:
    rng = random.Random(0)
    records = [
        record(f"r{i}", [rng.randint(1, 20) for _ in range(rng.randint(1, 6))], rng) for i in range(40)
    ]
    records[0]["source"] = "react"
    a = merge(records, model, 120, seed=1, tally=Tally("t"))
    b = merge(records, model, 120, seed=1, tally=Tally("t"))
    c = merge(records, model, 120, seed=2, tally=Tally("t"))
    assert a == b
    assert a != c and sorted(p["id"] for p in a) == sorted(p["id"] for p in c)
    assert all(rendered_length(p, model) <= 120 for p in a)
    r0 = [p for p in a if p["id"].startswith("r0_")]
    assert r0 and all(p["source"] == "react" for p in r0)
    assert all("source" not in p for p in a if not p["id"].startswith("r0_"))


def test_non_object_record_is_dropped_not_crashing(model: LengthModel) -> None:
    tally = Tally("t")
    assert prepare_all(["just a string", {"conversations": "x"}], model, tally) == []  # type: ignore[list-item]
    assert tally.dropped == {"malformed-record": 1, "missing-field": 1}
    assert tally.examples["malformed-record"] == ["record 0: expected a JSON object, got str"]
