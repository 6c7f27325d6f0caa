"""KAgentInstruct records → single-turn ShareGPT conversations (pure functions).

Each step of a record's `llm_prompt_response` (spec §8.1) is one LLM call of an agent
(planning, tool use, reflection, concluding): its instruction (+ input) is the human turn
and its output the gpt turn. The record's `source` (kwai-agent, meta-agent, autogpt,
modelscope, react, toolllama, profile) is kept on every conversation so users can filter.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from camel_chat.conversation import ConversationError
from camel_chat.data_preprocessing.alpaca import join_prompt

SOURCES = ("kwai-agent", "meta-agent", "autogpt", "modelscope", "react", "toolllama", "profile")


def convert_record(record: Any, index: int) -> Iterator[dict[str, Any]]:
    """Yield one conversation per step; raises `ConversationError` for a malformed record."""
    if not isinstance(record, dict):
        raise ConversationError("malformed-record", f"expected a JSON object, got {type(record).__name__}")
    steps = record.get("llm_prompt_response")
    if not isinstance(steps, list):
        raise ConversationError("malformed-record", "'llm_prompt_response' must be a list")
    record_id = record.get("id", index)
    for step_no, step in enumerate(steps):
        if not isinstance(step, dict):
            raise ConversationError("malformed-record", f"step {step_no} is not an object")
        fields = [step.get("instruction"), step.get("input") or "", step.get("output")]
        if not all(isinstance(f, str) for f in fields):
            raise ConversationError("malformed-record", f"step {step_no} needs string instruction/output")
        instruction, input_text, output = fields
        yield {
            "id": f"kagent/{record_id}_{step_no}",
            "source": record.get("source", "unknown"),
            "conversations": [
                {"from": "human", "value": join_prompt(instruction, input_text)},
                {"from": "gpt", "value": output},
            ],
        }
