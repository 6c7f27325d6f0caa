"""CAMEL chat/science, Alpaca and KAgentInstruct records → conversations (spec §1.6, §3, §8.1)."""

from __future__ import annotations

from typing import Any

import pytest

from camel_chat.conversation import ConversationError
from camel_chat.data_preprocessing import alpaca, camel, kagent


def msg(role_type: str, content: str) -> dict[str, Any]:
    return {
        "role_name": "X",
        "role_type": role_type,
        "meta_dict": None,
        "role": role_type.lower(),
        "content": content,
    }


def chat_record(**extra: Any) -> dict[str, Any]:
    record = {
        "ID": "001_002_003",
        "role_1": "Programmer_RoleType.ASSISTANT",
        "role_2": "Filmmaker_RoleType.USER",
        "original_task": "Make a film tool.",
        "specified_task": "Write a script that cuts scenes.",
        "message_1": msg("USER", "Instruction: Install ffmpeg.\nInput: None"),
        "message_2": msg("ASSISTANT", "Solution: Run `apt install ffmpeg`.\nNext request."),
        "message_3": msg("USER", "Instruction: Cut the first scene.\nInput: scene.mp4"),
        "message_4": msg("ASSISTANT", "Solution: \n\nUse `ffmpeg -ss 0 -t 10`. Next request."),
        "message_5": msg("USER", "<CAMEL_TASK_DONE>"),
        "termination_reason": "<CAMEL_TASK_DONE>",
        "num_messages": 5,
    }
    record.update(extra)
    return record


def test_chat_conversion_strips_markers_and_task_done() -> None:
    out = camel.convert_chat(chat_record(), "ai_society", "file")
    assert out == {
        "id": "ai_society/001_002_003",  # keys are lower-cased before reading
        "conversations": [
            {"from": "human", "value": "Install ffmpeg."},
            {"from": "gpt", "value": "Run `apt install ffmpeg`."},
            {"from": "human", "value": "Cut the first scene. scene.mp4"},
            {"from": "gpt", "value": "Use `ffmpeg -ss 0 -t 10`."},
        ],
    }


def test_marker_order_matters() -> None:
    assert camel.strip_markers("Instruction: Do it.\nInput: None") == "Do it."
    assert camel.strip_markers("Instruction: Do it.\nInput: data") == "Do it. data"
    assert camel.strip_markers("Solution:\nx\nNext request.") == "x"


def test_chat_unmatched_messages_follow_the_seed() -> None:
    # Without task-done, the trailing user message is appended as a lone human turn.
    rec = chat_record(termination_reason="max_num_messages")
    out = camel.convert_chat(rec, "code", "f")
    assert out["conversations"][-1] == {"from": "human", "value": "<CAMEL_TASK_DONE>"}
    assert len(out["conversations"]) == 5
    # More assistant than user messages: one extra gpt turn with the last assistant message.
    rec = chat_record(termination_reason="x")
    rec["message_5"] = msg("ASSISTANT", "Solution: extra")
    rec["message_6"] = msg("ASSISTANT", "Solution: last")
    out = camel.convert_chat(rec, "code", "f")
    assert [t["from"] for t in out["conversations"]][-2:] == ["gpt", "gpt"]
    assert out["conversations"][-1]["value"] == "last"


def test_chat_accepts_input_key_and_missing_termination_reason() -> None:
    rec = chat_record()
    del rec["ID"], rec["termination_reason"]
    rec["input"] = "007_008_009"
    out = camel.convert_chat(rec, "ai_society", "stem")
    assert out["id"] == "ai_society/007_008_009"
    assert out["conversations"][-1] == {"from": "human", "value": "<CAMEL_TASK_DONE>"}
    del rec["input"]
    assert camel.convert_chat(rec, "ai_society", "stem")["id"] == "ai_society/stem"


@pytest.mark.parametrize(
    ("mutate", "rule"),
    [
        (lambda r: r.update(message_2={"role_type": "CRITIC", "content": "x"}), "unknown-role"),
        (lambda r: r.update(message_2={"role_type": "USER"}), "malformed-record"),
    ],
)
def test_chat_bad_messages_raise_named_rules(mutate: Any, rule: str) -> None:
    rec = chat_record()
    mutate(rec)
    with pytest.raises(ConversationError) as info:
        camel.convert_chat(rec, "code", "f")
    assert info.value.rule == rule
    with pytest.raises(ConversationError, match="malformed-record"):
        camel.convert_chat(["not", "a", "dict"], "code", "f")


def test_science_conversion_reads_the_semicolon_topic_file() -> None:
    rec = {"role_1": "Physicist_RoleType.ASSISTANT", "topic;": "Optics", "sub_topic": "Lenses",
           "message_1": "Find f.", "message_2": "f = 10 cm."}  # fmt: skip
    assert camel.convert_science(rec, "physics", "1_2_3") == {
        "id": "physics/1_2_3",
        "conversations": [{"from": "human", "value": "Find f."}, {"from": "gpt", "value": "f = 10 cm."}],
    }
    with pytest.raises(ConversationError, match="message_2 must be a string"):
        camel.convert_science({"message_1": "q"}, "physics", "x")


def test_alpaca_joins_with_blank_line_and_no_trailing_space() -> None:
    row = {"instruction": "Translate.", "input": "Bonjour", "output": "Hello", "text": "..."}
    assert alpaca.convert_row(row, 3)["conversations"][0]["value"] == "Translate.\n\nBonjour"
    empty = alpaca.convert_row({"instruction": "Say hi.", "input": "", "output": "Hi"}, 4)
    assert empty == {
        "id": "alpaca/4",
        "conversations": [{"from": "human", "value": "Say hi."}, {"from": "gpt", "value": "Hi"}],
    }


def test_kagent_steps_become_single_turns_with_source() -> None:
    record = {
        "id": "q42",
        "query": "weather?",
        "source": "react",
        "functions": ["{}"],
        "function_names": ["web_search"],
        "llm_prompt_response": [
            {
                "instruction": "Plan: weather?",
                "input": "",
                "output": '{"task_name": "search"}',
                "llm_name": "gpt4",
                "human_edited": False,
            },
            {
                "instruction": "Conclude.",
                "input": "obs: sunny",
                "output": "It is sunny.",
                "llm_name": "gpt3.5",
                "human_edited": True,
            },
        ],
        "extra_infos": {},
    }
    out = list(kagent.convert_record(record, 0))
    assert [o["id"] for o in out] == ["kagent/q42_0", "kagent/q42_1"]
    assert {o["source"] for o in out} == {"react"}
    assert out[1]["conversations"] == [
        {"from": "human", "value": "Conclude.\n\nobs: sunny"},
        {"from": "gpt", "value": "It is sunny."},
    ]
    with pytest.raises(ConversationError, match="llm_prompt_response"):
        list(kagent.convert_record({"id": 1}, 0))


def test_join_prompt_leaves_out_empty_parts() -> None:
    assert alpaca.join_prompt("", "only input") == "only input"
    assert alpaca.join_prompt("only instruction", "  ") == "only instruction"
