"""Split long conversations on turn-pair boundaries so every piece fits the token budget.

The budget is checked against the exact rendered length (`LengthModel`): BOS, system
prompt, role headers, separators and end-of-turn tokens included. Differences from the
seed's `split_one_sample` (spec §4.3, design §2.7): the last pair is never dropped, a
single pair longer than the budget is reported and dropped (the seed emitted it, to be
truncated in training), and no empty piece is emitted.

Pieces keep the seed's ids: `<original id>_<index of the piece's first turn>`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from camel_chat.conversation import ConversationError
from camel_chat.data_preprocessing.tally import Tally
from camel_chat.templates.length import LengthModel, MessageShape


@dataclass(frozen=True)
class Prepared:
    """A validated conversation: its system prompt, turns cut to whole pairs, and costs."""

    record: dict[str, Any]
    system: str | None
    turns: list[dict[str, Any]]
    pair_first: list[int]  # tokens of pair k when it opens a piece (preamble included)
    pair_rest: list[int]  # tokens of pair k after another pair


def pairs_of(record: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
    """The system prompt and the turns cut to whole human/gpt pairs; raises on a bad turn."""
    if not isinstance(record, dict):
        raise ConversationError("malformed-record", f"expected a JSON object, got {type(record).__name__}")
    turns = record.get("conversations")
    if not isinstance(turns, list):
        raise ConversationError("missing-field", "'conversations' must be a list")
    system = None
    if turns and isinstance(turns[0], dict) and turns[0].get("from") == "system":
        system, turns = turns[0].get("value"), turns[1:]
        if not isinstance(system, str):
            raise ConversationError("missing-field", "the system turn needs a string 'value'", 0)
    turns = turns[: len(turns) // 2 * 2]  # a trailing unanswered turn has nothing to learn from
    if not turns:
        raise ConversationError("too-short", "no complete human/gpt pair")
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise ConversationError("missing-field", "a turn needs 'from' and a string 'value'", i)
        expected = "human" if i % 2 == 0 else "gpt"
        if turn.get("from") not in ("human", "gpt"):
            raise ConversationError("unknown-role", f"'from' is {turn.get('from')!r}", i)
        if turn["from"] != expected:
            raise ConversationError("wrong-roles", f"turn {i} should be {expected}, is {turn['from']}", i)
        if not turn["value"].strip():
            raise ConversationError("empty-value", f"turn {i} is empty", i)
    return system, turns


def prepare_all(records: Sequence[dict[str, Any]], model: LengthModel, tally: Tally) -> list[Prepared]:
    """Validate every record and cost its pairs with one batched tokenization."""
    valid: list[tuple[dict[str, Any], str | None, list[dict[str, Any]]]] = []
    for index, record in enumerate(records):
        try:
            system, turns = pairs_of(record)
        except ConversationError as exc:
            name = record.get("id") if isinstance(record, dict) else None
            tally.drop(exc.rule, f"{name if name else f'record {index}'}: {exc.detail}")
            continue
        valid.append((record, system, turns))
    # Every turn in its inner form; the user turns also in the form they take when they
    # open a piece, but only where that differs (templates that put the system prompt in
    # the first user message), so the usual case tokenizes each turn exactly once.
    texts: list[str] = []
    firsts: list[str] = []
    for _, system, turns in valid:
        user, user_first, reply = _shapes(model, system)
        differs = user_first.before != user.before or user_first.strip_lead != user.strip_lead
        for i in range(0, len(turns), 2):
            texts.append(user.content_text(turns[i]["value"]))
            texts.append(reply.content_text(turns[i + 1]["value"]))
            if differs:
                firsts.append(user_first.content_text(turns[i]["value"]))
    lengths = model.content_lengths(texts)
    first_lengths = iter(model.content_lengths(firsts))
    out: list[Prepared] = []
    pos = 0
    for record, system, turns in valid:
        user, user_first, reply = _shapes(model, system)
        opening = model.preamble_tokens(system) + user_first.fixed_tokens
        differs = user_first.before != user.before or user_first.strip_lead != user.strip_lead
        pair_first: list[int] = []
        pair_rest: list[int] = []
        for _ in range(0, len(turns), 2):
            user_len, reply_len = lengths[pos], lengths[pos + 1]
            pos += 2
            reply_tokens = reply.fixed_tokens + reply_len
            pair_rest.append(user.fixed_tokens + user_len + reply_tokens)
            first_len = next(first_lengths) if differs else user_len
            pair_first.append(opening + first_len + reply_tokens)
        out.append(Prepared(record, system, turns, pair_first, pair_rest))
    return out


def _shapes(model: LengthModel, system: str | None) -> tuple[MessageShape, MessageShape, MessageShape]:
    return (
        model.shape("user", False, system),
        model.shape("user", True, system),
        model.shape("assistant", False, system),
    )


def spans(prep: Prepared, max_length: int, tally: Tally) -> list[tuple[int, int]]:
    """Greedy split of one prepared conversation: the turn ranges [start, end) of its pieces,
    each at most `max_length` tokens once rendered."""
    out: list[tuple[int, int]] = []
    start: int | None = None
    used = 0
    for k in range(len(prep.pair_rest)):
        if start is not None and used + prep.pair_rest[k] <= max_length:
            used += prep.pair_rest[k]
            continue
        if start is not None:
            out.append((start, 2 * k))
        cost = prep.pair_first[k]
        if cost > max_length:
            record_id = prep.record.get("id", "")
            tally.drop("pair-over-budget", f"{record_id} turns {2 * k}-{2 * k + 1}: {cost} tokens")
            start, used = None, 0
            continue
        start, used = 2 * k, cost
    if start is not None:
        out.append((start, len(prep.turns)))
    return out


def piece(prep: Prepared, start: int, end: int) -> dict[str, Any]:
    """The record for turns [start, end): the seed's id, the record's other keys, the system turn."""
    turns = ([{"from": "system", "value": prep.system}] if prep.system is not None else []) + prep.turns[
        start:end
    ]
    extra = {k: v for k, v in prep.record.items() if k not in ("id", "conversations")}
    return {"id": f"{prep.record.get('id', '')}_{start}", **extra, "conversations": turns}


def split(prep: Prepared, max_length: int, tally: Tally) -> list[dict[str, Any]]:
    """Greedy split of one prepared conversation into pieces of at most `max_length` tokens."""
    return [piece(prep, start, end) for start, end in spans(prep, max_length, tally)]
