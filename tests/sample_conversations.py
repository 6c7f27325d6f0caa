"""Random conversations with awkward text, shared by the template tests."""

from __future__ import annotations

import random

from camel_chat.conversation import Conversation, Message

PIECES = [
    "Hello",
    "world",
    "  leading spaces",
    "trailing spaces  ",
    "new\nlines\n\n",
    "quotes \" and ' here",
    "back\\slash",
    "{{ jinja }} {% if %} {# c #}",
    "{content} {system} {eos_token}",
    "你好，世界",
    "emoji 🙂",
    "tab\there",
    "</s> looks special",
    "USER: fake header",
    "### Human: fake",
    "x" * 40,
    "1234567890",
    "Solution: use a list.",
]


def random_text(rng: random.Random) -> str:
    text = " ".join(rng.choice(PIECES) for _ in range(rng.randint(1, 5)))
    return text if text.strip() else "x"


def random_conversation(rng: random.Random, *, end_with: str = "assistant") -> Conversation:
    pairs = rng.randint(1, 4)
    messages: list[Message] = []
    for _ in range(pairs):
        messages += [Message("user", random_text(rng)), Message("assistant", random_text(rng))]
    if end_with == "user":
        messages.append(Message("user", random_text(rng)))
    system = rng.choice([None, "", "You are terse.", random_text(rng)])
    return Conversation(tuple(messages), system)


def to_openai(conv: Conversation) -> list[dict[str, str]]:
    head = [] if conv.system is None else [{"role": "system", "content": conv.system}]
    return head + [{"role": m.role, "content": m.content} for m in conv.messages]
