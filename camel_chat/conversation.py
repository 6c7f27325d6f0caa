"""Conversations as plain data, and the rules a conversation must follow.

A `Conversation` is an optional system message plus user/assistant messages. Roles use
the OpenAI names; ShareGPT's `human`/`gpt` are converted at the edge (`from_sharegpt`,
`to_sharegpt`). `validate` raises `ConversationError` naming the message index and the
rule that failed. No I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]
ROLES: tuple[Role, ...] = ("system", "user", "assistant")
SHAREGPT_TO_ROLE: dict[str, Role] = {"human": "user", "gpt": "assistant", "system": "system"}
ROLE_TO_SHAREGPT: dict[Role, str] = {"user": "human", "assistant": "gpt", "system": "system"}


class ConversationError(ValueError):
    """A conversation breaks a rule; `index` is the offending message (None: the whole)."""

    def __init__(self, rule: str, detail: str, index: int | None = None) -> None:
        self.rule = rule
        self.index = index
        self.detail = detail
        where = "conversation" if index is None else f"message {index}"
        super().__init__(f"{where}: {rule}: {detail}")


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class Conversation:
    """A system prompt (None: the template's default) and the messages after it."""

    messages: tuple[Message, ...]
    system: str | None = None
    id: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, *pairs: tuple[str, str], system: str | None = None, id: str = "") -> Conversation:
        """Build from (role, content) pairs: `Conversation.of(("user", "hi"), ("assistant", "yo"))`."""
        return cls(tuple(Message(_role(r, i), c) for i, (r, c) in enumerate(pairs)), system, id)


def _role(role: object, index: int) -> Role:
    if role not in ROLES:
        raise ConversationError("unknown-role", f"role {role!r} is not one of {ROLES}", index)
    return role  # type: ignore[return-value]


def validate(conversation: Conversation, *, ends_with: Role | None = "assistant") -> None:
    """Check the shape our templates render: user, assistant, user, ... strictly alternating.

    `ends_with="assistant"` is the training rule (every user turn is answered);
    `ends_with="user"` is the serving rule (the model answers the last user turn);
    `None` accepts either.
    """
    messages = conversation.messages
    if not messages:
        raise ConversationError("empty", "no messages")
    for i, message in enumerate(messages):
        if message.role == "system":
            raise ConversationError("system-not-first", "a system message may only come first", i)
        _role(message.role, i)
        if not isinstance(message.content, str):
            raise ConversationError("content-not-text", f"content is {type(message.content).__name__}", i)
        if not message.content.strip():
            raise ConversationError("empty-content", "content is empty", i)
        expected = "user" if i % 2 == 0 else "assistant"
        if message.role != expected:
            rule = "must-start-with-user" if i == 0 else "roles-must-alternate"
            raise ConversationError(rule, f"expected {expected}, got {message.role}", i)
    if ends_with is not None and messages[-1].role != ends_with:
        raise ConversationError(
            f"must-end-with-{ends_with}", f"last message is {messages[-1].role}", len(messages) - 1
        )


def from_sharegpt(record: Mapping[str, Any]) -> Conversation:
    """Turn `{"id", "conversations": [{"from", "value"}, ...]}` into a `Conversation`.

    A leading `system` turn becomes the system prompt. Raises `ConversationError` for a
    missing field or an unknown `from`; call `validate` for the ordering rules.
    """
    turns = record.get("conversations")
    if not isinstance(turns, Sequence) or isinstance(turns, str):
        raise ConversationError("missing-field", "'conversations' must be a list")
    system: str | None = None
    messages: list[Message] = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, Mapping) or "from" not in turn or "value" not in turn:
            raise ConversationError("missing-field", "a turn needs 'from' and 'value'", i)
        role = SHAREGPT_TO_ROLE.get(turn["from"])
        if role is None:
            raise ConversationError(
                "unknown-role",
                f"'from' is {turn['from']!r}, expected one of {sorted(SHAREGPT_TO_ROLE)}",
                i,
            )
        if role == "system" and i == 0:
            system = turn["value"]
            continue
        messages.append(Message(role, turn["value"]))
    return Conversation(tuple(messages), system, str(record.get("id", "")))


def to_sharegpt(conversation: Conversation) -> dict[str, Any]:
    """The inverse of `from_sharegpt` (the system prompt, if set, becomes a leading turn)."""
    turns = [{"from": "system", "value": conversation.system}] if conversation.system is not None else []
    turns += [{"from": ROLE_TO_SHAREGPT[m.role], "value": m.content} for m in conversation.messages]
    return {"id": conversation.id, "conversations": turns}
