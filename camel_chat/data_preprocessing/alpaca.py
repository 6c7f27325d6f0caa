"""Alpaca rows → single-turn ShareGPT conversations (pure functions).

human = instruction, then the input after a blank line when there is one (the seed
joined them with a space and left a trailing space when the input was empty: design §2.7);
gpt = output; id = `alpaca/<row index>`.
"""

from __future__ import annotations

from typing import Any

from camel_chat.conversation import ConversationError

COLUMNS = ("instruction", "input", "output")


def join_prompt(instruction: str, input_text: str) -> str:
    """Instruction and input separated by a blank line; an empty part is left out."""
    return "\n\n".join(part for part in (instruction, input_text) if part.strip())


def convert_row(row: dict[str, Any], index: int) -> dict[str, Any]:
    for column in COLUMNS:
        value = row.get(column)
        if value is not None and not isinstance(value, str):
            raise ConversationError("malformed-record", f"column {column!r} is {type(value).__name__}")
    return {
        "id": f"alpaca/{index}",
        "conversations": [
            {
                "from": "human",
                "value": join_prompt(row.get("instruction") or "", row.get("input") or ""),
            },
            {"from": "gpt", "value": row.get("output") or ""},
        ],
    }
