"""CAMEL role-play generation against a scripted fake OpenAI chat server (httpx.MockTransport)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from camel_chat.data_preprocessing import camel
from camel_chat.data_preprocessing import generate_roleplay as gr
from camel_chat.data_preprocessing import roleplay_prompts as prompts

Reply = str | Callable[[], httpx.Response]


class FakeServer:
    """Answers the specifier, the AI user and the AI assistant from scripted lists."""

    def __init__(
        self, user: list[Reply], assistant: list[Reply], specified: str = "Build a tiny CLI."
    ) -> None:
        self.user = list(user)
        self.assistant = list(assistant)
        self.specified = specified
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def handler(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/chat/completions"
        body = json.loads(request.content)
        with self.lock:
            self.requests.append(body)
            system = body["messages"][0]["content"]
            if system == prompts.TASK_SPECIFIER_SYSTEM:
                reply: Reply = self.specified
            elif "You are acting as a" in system and "directing a" in system:
                reply = self.user.pop(0) if self.user else "Instruction: keep going.\nInput: None"
            else:
                reply = self.assistant.pop(0) if self.assistant else "Solution: done.\nNext request."
        if callable(reply):
            return reply()
        return httpx.Response(
            200,
            json={
                "id": "x",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}
                ],
            },
        )

    def client(self, **kw: Any) -> gr.ChatClient:
        return gr.ChatClient("http://fake/v1", "tiny", transport=httpx.MockTransport(self.handler), **kw)


JOB = gr.Job(1, 2, 3, "Programmer", "Filmmaker", "Make a film tool.")


def instr(i: int) -> str:
    return f"Instruction: step {i}.\nInput: None"


def sol(i: int) -> str:
    return f"Solution: did step {i}.\nNext request."


def run(server: FakeServer, **limits: Any) -> dict[str, Any]:
    record = gr.role_play(server.client(), JOB, gr.Limits(**limits))
    assert record is not None
    return record


def check_schema(record: dict[str, Any]) -> None:
    assert record["id"] == "001_002_003"
    assert record["role_1"] == "Programmer_RoleType.ASSISTANT"
    assert record["role_2"] == "Filmmaker_RoleType.USER"
    assert record["original_task"] == "Make a film tool."
    assert record["specified_task"] == "Build a tiny CLI."
    n = record["num_messages"]
    assert [k for k in record if k.startswith("message_")] == [f"message_{k}" for k in range(1, n + 1)]
    for k in range(1, n + 1):
        m = record[f"message_{k}"]
        assert set(m) == {"role_name", "role_type", "meta_dict", "role", "content"}
        expected = "USER" if k % 2 else "ASSISTANT"
        assert m["role_type"] == expected
        assert m["role"] == expected.lower()
        assert m["role_name"] == ("Filmmaker" if k % 2 else "Programmer")
    assert isinstance(record["termination_reason"], str)


def test_task_done() -> None:
    server = FakeServer([instr(1), instr(2), gr.TASK_DONE], [sol(1), sol(2)])
    record = run(server)
    check_schema(record)
    assert record["termination_reason"] == "<CAMEL_TASK_DONE>"
    assert record["num_messages"] == 5
    assert record["message_5"]["content"] == gr.TASK_DONE
    conv = camel.convert_chat(record, "ai_society_chat", "x")
    assert conv["id"] == "ai_society_chat/001_002_003"
    assert conv["conversations"] == [
        {"from": "human", "value": "step 1."},
        {"from": "gpt", "value": "did step 1."},
        {"from": "human", "value": "step 2."},
        {"from": "gpt", "value": "did step 2."},
    ]


def test_prompts_reach_the_agents() -> None:
    server = FakeServer([gr.TASK_DONE], [])
    run(server)
    spec, user = server.requests
    assert "Make a film tool." in spec["messages"][1]["content"]
    assert "Programmer" in spec["messages"][1]["content"]
    assert "Build a tiny CLI." in user["messages"][0]["content"]
    assert gr.TASK_DONE in user["messages"][0]["content"]
    assert user["model"] == "tiny"


def test_histories_alternate() -> None:
    server = FakeServer([instr(1), instr(2), gr.TASK_DONE], [sol(1), sol(2)])
    run(server)
    last_user_call = server.requests[-1]["messages"]
    assert [m["role"] for m in last_user_call] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert last_user_call[-1]["content"] == sol(2)
    last_assistant_call = server.requests[-2]["messages"]
    assert [m["role"] for m in last_assistant_call] == ["system", "user", "assistant", "user"]
    assert last_assistant_call[-1]["content"] == instr(2)


@pytest.mark.parametrize("max_messages, expected", [(4, 4), (5, 5), (1, 1)])
def test_max_messages(max_messages: int, expected: int) -> None:
    record = run(FakeServer([], []), max_messages=max_messages)
    check_schema(record)
    assert record["termination_reason"] == "max_num_messages"
    assert record["num_messages"] == expected


def test_user_no_instruct_threshold() -> None:
    server = FakeServer(
        [instr(1), "Hmm.", "Well.", instr(2), "a", "b", "c"], [sol(1), sol(2), sol(3), sol(4)] * 2
    )
    record = run(server)
    check_schema(record)
    assert record["termination_reason"] == "user_no_instruct_threshold"
    # the counter resets at instr(2): a, b, c are the three in a row; the third ends the chat
    assert record["num_messages"] == 13
    assert record["message_13"]["content"] == "c"


def test_assistant_instruct_threshold() -> None:
    server = FakeServer([instr(1), instr(2)], [sol(1), "Instruction: you do it.\nInput: None"])
    record = run(server)
    check_schema(record)
    assert record["termination_reason"] == "assistant_instruct_threshold"
    assert record["num_messages"] == 4


def test_repeat_word_threshold() -> None:
    thanks = "Instruction: Thank you, goodbye!\nInput: None"
    server = FakeServer([instr(1), thanks, thanks, thanks, thanks], [])
    record = run(server)
    check_schema(record)
    assert record["termination_reason"] == "repeat_word_threshold"
    assert record["num_messages"] == 9


def test_assistant_api_error() -> None:
    server = FakeServer([instr(1), instr(2)], [sol(1), lambda: httpx.Response(500, text="boom")])
    record = run(server)
    check_schema(record)
    assert record["termination_reason"].startswith("RoleType.ASSISTANT: HTTP 500")
    assert record["num_messages"] == 3
    conv = camel.convert_chat(record, "d", "x")
    assert [t["from"] for t in conv["conversations"]] == ["human", "gpt", "human"]


def test_user_api_error_and_transport_error() -> None:
    def broken() -> httpx.Response:
        raise httpx.ConnectError("refused")

    record = run(FakeServer([instr(1), broken], [sol(1)]))
    assert record["termination_reason"].startswith("RoleType.USER: request failed")
    assert record["num_messages"] == 2


def test_nothing_generated_returns_none() -> None:
    server = FakeServer([lambda: httpx.Response(503, text="down")], [])
    assert gr.role_play(server.client(), JOB) is None
    server = FakeServer([], [])
    server.specified = ""  # empty specifier reply is an API error
    assert gr.role_play(server.client(), JOB) is None


def test_request_options() -> None:
    server = FakeServer([gr.TASK_DONE], [])
    gr.role_play(server.client(temperature=0.2, seed=7, max_tokens=64), JOB)
    body = server.requests[0]
    assert (body["temperature"], body["seed"], body["max_tokens"]) == (0.2, 7, 64)


def test_read_list_and_jobs(tmp_path: Path) -> None:
    f = tmp_path / "roles.txt"
    f.write_text("1. Accountant\n\n# comment\n2) Actor\nChef\n", encoding="utf-8")
    assert gr.read_list(f) == ["Accountant", "Actor", "Chef"]
    jobs = gr.make_jobs(["A", "B"], ["U"], ["t1", "t2"])
    assert [j.id for j in jobs] == ["001_001_001", "001_001_002", "002_001_001", "002_001_002"]


def write_inputs(tmp_path: Path) -> list[str]:
    (tmp_path / "a.txt").write_text("Programmer\nChef\n", encoding="utf-8")
    (tmp_path / "u.txt").write_text("Filmmaker\n", encoding="utf-8")
    (tmp_path / "t.txt").write_text("Make a film tool.\nCook dinner.\n", encoding="utf-8")
    return [
        "--api-base", "http://fake/v1", "--model", "tiny",
        "--assistant-roles", str(tmp_path / "a.txt"), "--user-roles", str(tmp_path / "u.txt"),
        "--tasks", str(tmp_path / "t.txt"), "--out-dir", str(tmp_path / "out"), "--parallel", "3",
    ]  # fmt: skip


def test_cli_parallel_resumable_and_converts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = write_inputs(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "002_001_002.json").write_text("{}", encoding="utf-8")  # already done: must be skipped

    # every user reply finishes the task after one exchange
    calls: dict[str, int] = {}
    lock = threading.Lock()

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        msgs = body["messages"]
        system = msgs[0]["content"]
        if system == prompts.TASK_SPECIFIER_SYSTEM:
            text = "Specific: " + msgs[1]["content"].split("broad goal: ")[1].splitlines()[0]
        elif "directing a" in system:
            text = instr(1) if len(msgs) == 2 else gr.TASK_DONE
        else:
            text = sol(1)
        with lock:
            calls[system[:20]] = calls.get(system[:20], 0) + 1
        return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": text}}]})

    assert gr.main(args, transport=httpx.MockTransport(handler)) == 0
    assert json.loads(capsys.readouterr().out) == {"written": 3, "skipped": 1, "failed": 0}
    files = sorted(p.name for p in out.iterdir())
    assert files == ["001_001_001.json", "001_001_002.json", "002_001_001.json", "002_001_002.json"]
    record = json.loads((out / "002_001_001.json").read_text(encoding="utf-8"))
    assert record["role_1"] == "Chef_RoleType.ASSISTANT"
    assert record["original_task"] == "Make a film tool."
    assert record["specified_task"] == "Specific: Make a film tool."
    assert record["termination_reason"] == gr.TASK_DONE and record["num_messages"] == 3
    for name in files[:3]:
        data = json.loads((out / name).read_text(encoding="utf-8"))
        conv = camel.convert_chat(data, "ai_society_chat", name)
        assert conv["conversations"] == [
            {"from": "human", "value": "step 1."},
            {"from": "gpt", "value": "did step 1."},
        ]
    assert not list(out.glob(".*.tmp"))

    # second run: everything skipped, no request made
    def fail(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request expected")

    assert gr.main(args, transport=httpx.MockTransport(fail)) == 0
    assert json.loads(capsys.readouterr().out) == {"written": 0, "skipped": 4, "failed": 0}


def test_cli_failure_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = write_inputs(tmp_path)
    transport = httpx.MockTransport(lambda request: httpx.Response(500, text="down"))
    assert gr.main([*args, "--limit", "1"], transport=transport) == 1
    assert json.loads(capsys.readouterr().out) == {"written": 0, "skipped": 0, "failed": 1}
    assert list((tmp_path / "out").iterdir()) == []
