"""Loopback end to end: controller, model_worker (a tiny vicuna_v1.1 checkpoint) and the OpenAI API
server as real processes on free ports, driven by the official `openai` client: list, chat
(plain and streamed with usage), completions, embeddings, errors, auth. Every process the test
starts is stopped in a `finally` (terminate, wait, kill)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from serving_stack import MODEL, Stack, serving_stack

pytestmark = pytest.mark.slow

API_KEY = "e2e-key"
CONTEXT_LENGTH = 1024  # room for the role-play prompts; "hello " * 5000 still overflows


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with serving_stack(
        tmp_path_factory.mktemp("e2e"), context_length=CONTEXT_LENGTH, api_keys=API_KEY
    ) as running:
        yield running


def test_official_client_end_to_end(stack: Stack) -> None:
    client = openai.OpenAI(base_url=f"{stack.api}/v1", api_key=API_KEY, max_retries=0, timeout=60)

    assert MODEL in [m.id for m in client.models.list().data]

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]
    chat = client.chat.completions.create(model=MODEL.lower(), messages=messages, max_tokens=8, temperature=0)
    choice = chat.choices[0]
    assert chat.model == MODEL and chat.id.startswith("chatcmpl-")
    assert isinstance(choice.message.content, str) and choice.message.role == "assistant"
    assert choice.finish_reason in ("stop", "length")
    assert chat.usage is not None and 1 <= chat.usage.completion_tokens <= 8
    assert chat.usage.prompt_tokens == _vicuna_prompt_tokens(stack.checkpoint, messages)
    assert chat.usage.total_tokens == chat.usage.prompt_tokens + chat.usage.completion_tokens

    stream = client.chat.completions.create(
        model=MODEL,
        messages=messages,
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == choice.message.content  # greedy: the same text streamed or not
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == chat.usage.completion_tokens

    # No max_tokens: up to the rest of the context (the worker's /model_details, then its own clamp).
    unbounded = client.chat.completions.create(model=MODEL, messages=messages, temperature=0)
    assert unbounded.usage is not None and unbounded.choices[0].finish_reason in ("stop", "length")
    assert unbounded.usage.total_tokens <= CONTEXT_LENGTH

    completion = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=5, echo=True)
    assert completion.choices[0].text.startswith("Once upon a time")
    assert completion.usage is not None and 1 <= completion.usage.completion_tokens <= 5

    embedded = client.embeddings.create(model=MODEL, input=["hello world", "camel"])
    assert len(embedded.data) == 2 and len(embedded.data[0].embedding) > 0

    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=messages, max_tokens=2)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=messages, temperature=9)
    wrong = openai.OpenAI(base_url=f"{stack.api}/v1", api_key="wrong-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()


def test_kagentsys_style_completions_with_trailing_slash(stack: Stack) -> None:
    body = {
        "model": MODEL.lower(),
        "prompt": "Plan the task.",
        "temperature": 0.1,
        "top_p": 0.75,
        "top_k": 40,
    }
    answer = httpx.post(
        f"{stack.api}/v1/completions/",
        json={**body, "max_tokens": 4},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=60,
        trust_env=False,
    )
    assert answer.status_code == 200, answer.text
    assert isinstance(answer.json()["choices"][0]["text"], str)


def test_prompt_over_the_context_is_a_400_naming_the_limit(stack: Stack) -> None:
    client = openai.OpenAI(base_url=f"{stack.api}/v1", api_key=API_KEY, max_retries=0, timeout=60)
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=MODEL, prompt="hello " * 5000, max_tokens=2)
    assert "context length" in str(caught.value)


def _vicuna_prompt_tokens(checkpoint: Path, messages: list[dict[str, str]]) -> int:
    """The exact prompt length, rendered here with the same template and tokenizer."""
    from transformers import AutoTokenizer

    from camel_chat.conversation import Conversation, Message
    from camel_chat.templates import SegmentEncoder, SpecialTokens, get_template, render

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    system = messages[0]["content"]
    turns = tuple(Message(m["role"], m["content"]) for m in messages[1:])  # type: ignore[arg-type]
    segments = render(
        get_template("vicuna_v1.1"),
        Conversation(turns, system),
        add_generation_prompt=True,
        special=SpecialTokens.of(tokenizer),
    )
    return len(SegmentEncoder(tokenizer).encode(segments).input_ids)


def test_terminal_chat_in_api_mode_against_the_stack(stack: Stack) -> None:
    """`cli --api-base`: one message on stdin gets a streamed reply; EOF ends the chat with 0."""
    env = {**os.environ, "NO_PROXY": "*", "PYTHONUNBUFFERED": "1"}
    command = [
        sys.executable, "-m", "camel_chat.serve.cli", "--api-base", f"{stack.api}/v1", "--model", MODEL,
        "--api-key", API_KEY, "--max-new-tokens", "8", "--temperature", "0", "--style", "simple",
    ]  # fmt: skip
    done = subprocess.run(command, input=b"Hello there\n", capture_output=True, env=env, timeout=120)
    out = done.stdout.decode("utf-8", "replace")
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")[-2000:]
    assert "USER" in out.upper() and "ASSISTANT" in out.upper()
    client = openai.OpenAI(base_url=f"{stack.api}/v1", api_key=API_KEY)
    expected = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello there"}], max_tokens=8, temperature=0
    )
    reply = expected.choices[0].message.content or ""
    visible = "".join(ch for ch in reply if ch.isprintable() or ch in "\n\t").strip()
    assert visible[:5] in out  # the same greedy reply, streamed to the terminal


def test_web_ui_openai_backend_against_the_stack(stack: Stack) -> None:
    """The web UI's --api-base backend lists the model and streams a reply from our API server."""
    from camel_chat.serve.web_chat import OpenAIBackend, add_text, bot_response

    backend = OpenAIBackend(f"{stack.api}/v1", api_key=API_KEY)
    assert MODEL in backend.list_models()
    history, _ = add_text([], "Hello there")
    snapshots = list(bot_response(backend, history, MODEL, max_new_tokens=8, temperature=0.0))
    final = snapshots[-1][-1]["content"]
    assert len(snapshots) >= 2 and final and "error_code" not in final


def test_kagentbench_infer_and_score_against_the_stack(stack: Stack, tmp_path: Path) -> None:
    """KAgentBench inference through our /v1/completions, then the original scoring: the tiny
    model's answers are gibberish, so the scores are low, but every number is computed."""
    import importlib.util
    import json

    from camel_chat.evaluation import kagentbench

    cases_file = Path(__file__).resolve().parents[1] / "evaluation" / "test_kagent_scoring.py"
    spec = importlib.util.spec_from_file_location("kagent_scoring_cases_e2e", cases_file)
    assert spec and spec.loader
    cases = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cases)
    records, _ = cases.tiny_benchmark()
    eval_file, pred_file = tmp_path / "eval.jsonl", tmp_path / "pred.jsonl"
    eval_file.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    base = ["--api-base", f"{stack.api}/v1", "--model", MODEL, "--api-key", API_KEY]
    args = ["infer", *base, "--eval-file", str(eval_file), "--out", str(pred_file), "--max-tokens", "12"]
    assert kagentbench.main(args) == 0
    predictions = [json.loads(line) for line in pred_file.read_text(encoding="utf-8").splitlines()]
    assert sorted(p["id"] for p in predictions) == sorted(r["id"] for r in records)
    assert kagentbench.main(["score", str(eval_file), str(pred_file)]) == 0


def test_generate_roleplay_against_the_stack_feeds_the_converter(stack: Stack, tmp_path: Path) -> None:
    """Two agents talk through our API; the files it writes convert straight into conversations."""
    import json

    from camel_chat.data_preprocessing import camel as camel_format
    from camel_chat.data_preprocessing import generate_roleplay

    (tmp_path / "assistants.txt").write_text("Programmer\n")
    (tmp_path / "users.txt").write_text("Gardener\n")
    (tmp_path / "tasks.txt").write_text("Build a watering schedule app\n")
    out_dir = tmp_path / "roleplay"
    args = [
        "--api-base", f"{stack.api}/v1", "--model", MODEL, "--api-key", API_KEY,
        "--assistant-roles", str(tmp_path / "assistants.txt"), "--user-roles", str(tmp_path / "users.txt"),
        "--tasks", str(tmp_path / "tasks.txt"), "--out-dir", str(out_dir),
        "--max-messages", "4", "--max-tokens", "12", "--temperature", "0",
    ]  # fmt: skip
    assert generate_roleplay.main(args) == 0
    (written,) = sorted(out_dir.glob("*.json"))
    assert written.name == "001_001_001.json"
    dialogue = json.loads(written.read_text())
    assert (
        dialogue["role_1"] == "Programmer_RoleType.ASSISTANT"
        and dialogue["role_2"] == "Gardener_RoleType.USER"
    )
    assert dialogue["num_messages"] >= 1 and dialogue["termination_reason"]
    conversation = camel_format.convert_chat(dialogue, "ai_society", written.stem)
    assert conversation["id"] == "ai_society/001_001_001" and conversation["conversations"]
