"""CAMEL records → ShareGPT conversations (pure functions, no I/O).

Two formats (spec §1.2, §1.3):
- chat (ai_society, code): `message_k` objects with `role_type` USER/ASSISTANT; the AI
  user (instruction giver) becomes `human`, the AI assistant becomes `gpt`;
- science (math, physics, chemistry, biology): `message_1` problem → `human`,
  `message_2` solution → `gpt`.

Differences from the seed (design §2.7): ids are deterministic (`<dataset>/<original id>`),
a file without `termination_reason` is accepted, and `id` or `input` is read as the id.
"""

from __future__ import annotations

from typing import Any

from camel_chat.conversation import ConversationError

TASK_DONE = "<CAMEL_TASK_DONE>"
# Deleted from every message, in this order (the seed's list; order matters:
# "\nInput: None" must go before "Input: None").
STRIPPED_MARKERS: tuple[str, ...] = (
    "Instruction: ",
    "\nInput: None",
    "Input: None",
    "\nInput:",
    "Input:",
    "Solution: \n\n",
    "Solution:\n",
    "Solution: ",
    "\nNext request.",
    " Next request.",
)


def strip_markers(text: str) -> str:
    for marker in STRIPPED_MARKERS:
        text = text.replace(marker, "")
    return text


def _require_dict(record: Any) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise ConversationError("malformed-record", f"expected a JSON object, got {type(record).__name__}")
    return {str(k).lower(): v for k, v in record.items()}


def convert_chat(record: Any, dataset: str, fallback_id: str) -> dict[str, Any]:
    """One CAMEL chat-format file → `{"id", "conversations"}` (seed semantics, §1.6)."""
    data = _require_dict(record)
    keys = [k for k in data if "message_" in k]
    if data.get("termination_reason") == TASK_DONE and keys:
        keys = keys[:-1]  # the AI user's "task done" message is not a turn to learn from
    users: list[str] = []
    assistants: list[str] = []
    for key in keys:
        message = data[key]
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise ConversationError("malformed-record", f"{key} needs a string 'content'")
        role_type = message.get("role_type")
        if role_type not in ("USER", "ASSISTANT"):
            raise ConversationError("unknown-role", f"{key} has role_type {role_type!r}")
        (users if role_type == "USER" else assistants).append(strip_markers(message["content"]))
    turns: list[dict[str, str]] = []
    for user, assistant in zip(users, assistants, strict=False):
        turns += [{"from": "human", "value": user}, {"from": "gpt", "value": assistant}]
    # The seed appends the last unmatched message once; merge later trims to whole pairs.
    if len(users) > len(assistants):
        turns.append({"from": "human", "value": users[-1]})
    elif len(assistants) > len(users):
        turns.append({"from": "gpt", "value": assistants[-1]})
    original_id = data.get("id", data.get("input")) or fallback_id
    return {"id": f"{dataset}/{original_id}", "conversations": turns}


def convert_science(record: Any, dataset: str, fallback_id: str) -> dict[str, Any]:
    """One CAMEL science file → a two-turn conversation (problem, solution)."""
    data = _require_dict(record)
    for key in ("message_1", "message_2"):
        if not isinstance(data.get(key), str):
            raise ConversationError("malformed-record", f"{key} must be a string")
    return {
        "id": f"{dataset}/{fallback_id}",
        "conversations": [
            {"from": "human", "value": data["message_1"]},
            {"from": "gpt", "value": data["message_2"]},
        ],
    }
