"""Conversation validation names the message index and the rule."""

from __future__ import annotations

import pytest

from camel_chat.conversation import (
    Conversation,
    ConversationError,
    Message,
    from_sharegpt,
    to_sharegpt,
    validate,
)


@pytest.mark.parametrize(
    ("messages", "rule", "index"),
    [
        ((), "empty", None),
        ((Message("assistant", "x"),), "must-start-with-user", 0),
        ((Message("user", "a"), Message("user", "b")), "roles-must-alternate", 1),
        ((Message("user", "a"), Message("assistant", "  ")), "empty-content", 1),
        ((Message("user", "a"), Message("system", "s")), "system-not-first", 1),
        ((Message("user", "a"), Message("tool", "t")), "unknown-role", 1),  # type: ignore[arg-type]
        ((Message("user", "a"),), "must-end-with-assistant", 0),
    ],
)
def test_validate_names_rule_and_index(messages: tuple[Message, ...], rule: str, index: int | None) -> None:
    with pytest.raises(ConversationError) as info:
        validate(Conversation(messages))
    assert info.value.rule == rule
    assert info.value.index == index


def test_sharegpt_round_trip_with_system() -> None:
    record = {
        "id": "x1",
        "conversations": [
            {"from": "system", "value": "S"},
            {"from": "human", "value": "q"},
            {"from": "gpt", "value": "a"},
        ],
    }
    conv = from_sharegpt(record)
    assert conv.system == "S"
    assert [m.role for m in conv.messages] == ["user", "assistant"]
    validate(conv)
    assert to_sharegpt(conv) == record


def test_from_sharegpt_unknown_role_names_turn() -> None:
    with pytest.raises(ConversationError, match="message 1: unknown-role: 'from' is 'bing'"):
        from_sharegpt({"conversations": [{"from": "human", "value": "q"}, {"from": "bing", "value": "a"}]})
    with pytest.raises(ConversationError, match="missing-field"):
        from_sharegpt({"conversations": [{"from": "human"}]})
