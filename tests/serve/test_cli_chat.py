"""The terminal chat (`python -m camel_chat.serve.cli`): the loop with a fake backend and a fake
terminal, programmatic style, and the real CLI driven in tmux as a person would (send-keys,
capture-pane) on tiny checkpoints."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from terminal import CLI_ENV, Tmux, cli_command, needs_tmux

from camel_chat.serve.chat_io import SENTINEL, ChatIO, ProgrammaticChatIO, SimpleChatIO
from camel_chat.serve.cli import Conversation, chat_loop

# ---------------------------------------------------------------- unit: loop with fakes


class FakeBackend:
    template_name = "vicuna_v1.1"

    def __init__(self, replies: list[str], interrupt_after: int | None = None) -> None:
        self.replies = replies
        self.calls: list[list[dict[str, str]]] = []
        self.interrupt_after = interrupt_after
        self.closed = 0

    def stream(
        self, messages: list[dict[str, str]], temperature: float, max_new_tokens: int
    ) -> Iterator[str]:
        self.calls.append(messages)
        reply = self.replies[(len(self.calls) - 1) % len(self.replies)]
        try:
            for i in range(1, len(reply) + 1):
                if self.interrupt_after is not None and i > self.interrupt_after:
                    raise KeyboardInterrupt
                yield reply[:i]
        finally:
            self.closed += 1


class FakeIO(ChatIO):
    def __init__(self, inputs: list[str]) -> None:
        self.inputs = list(inputs)
        self.log: list[str] = []

    def prompt_for_input(self, role: str) -> str:
        if not self.inputs:
            raise EOFError
        line = self.inputs.pop(0)
        self.log.append(f"{role}> {line}")
        return line

    def prompt_for_output(self, role: str) -> None:
        self.log.append(f"{role}:")

    def stream_output(self, texts: object) -> str:
        last = ""
        for text in texts:  # type: ignore[attr-defined]
            last = text
        self.log.append(last)
        return last

    def info(self, text: str) -> None:
        self.log.append(text)


def test_loop_commands(tmp_path: Path) -> None:
    saved = tmp_path / "c.json"
    backend = FakeBackend(["  first reply ", "second"])
    io_ = FakeIO(
        ["hi", f"!!save {saved}", "!!reset", "!!remove", f"!!load {saved}", "!!regen", "again", "!!remove"]
    )
    conv = chat_loop(backend, io_, system="be brief", temperature=0.0, max_new_tokens=8)
    data = json.loads(saved.read_text())
    assert data == {
        "template": "vicuna_v1.1",
        "system": "be brief",
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "first reply"}],
    }
    assert "resetting..." in io_.log and "No messages to remove." in io_.log
    # !!regen answered "hi" again (system first), then "again" was answered and removed
    assert backend.calls[1] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert conv.messages == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "second"}]
    assert io_.log[-1] == "exit..."
    assert backend.closed == len(backend.calls) == 3


def test_loop_exit_and_empty_input() -> None:
    for inputs in (["!!exit", "never"], ["", "never"], []):
        backend = FakeBackend(["x"])
        chat_loop(backend, FakeIO(inputs))
        assert backend.calls == []


def test_interrupted_reply_keeps_the_partial_text_and_the_chat_goes_on() -> None:
    backend = FakeBackend(["abcdefgh"], interrupt_after=3)
    out = io.StringIO()
    io_ = SimpleChatIO(out=out)
    inputs = ["one", "two"]

    def prompt(role: str) -> str:
        if not inputs:
            raise EOFError
        return inputs.pop(0)

    io_.prompt_for_input = prompt  # type: ignore[method-assign]
    chat_loop(backend, io_)
    text = out.getvalue()
    assert text.count("[reply interrupted]") == 2
    assert "ASSISTANT: abc\n" in text
    assert len(backend.calls) == 2
    assert backend.calls[1][1] == {"role": "assistant", "content": "abc"}
    assert backend.closed == 2


def test_load_rejects_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"messages": [{"role": "wizard"}]}')
    io_ = FakeIO([f"!!load {bad}", f"!!load {tmp_path / 'missing.json'}", "!!frob"])
    conv = chat_loop(FakeBackend(["x"]), io_)
    assert conv.messages == []
    assert sum("cannot load" in line for line in io_.log) == 2
    assert any("unknown command !!frob" in line for line in io_.log)
    with pytest.raises(ValueError):
        Conversation.from_json([])


def test_programmatic_style_markers_and_sentinel() -> None:
    inp = io.StringIO(f"hello\nworld{SENTINEL}\n!!exit{SENTINEL}")
    out = io.StringIO()
    chat_loop(FakeBackend(["reply\x1b[2J text"]), ProgrammaticChatIO(inp, out))
    text = out.getvalue()
    assert "[!OP:USER]: hello\nworld\n" in text
    assert "[!OP:ASSISTANT]: reply[2J text\n" in text  # control characters are not passed through
    assert text.endswith("exit...\n")


def test_programmatic_end_of_input_exits() -> None:
    out = io.StringIO()
    backend = FakeBackend(["x"])
    chat_loop(backend, ProgrammaticChatIO(io.StringIO(""), out))
    assert backend.calls == [] and "exit..." in out.getvalue()


# ---------------------------------------------------------------- tmux: the real CLI


def _tiny_checkpoint(out: Path) -> Path:
    from camel_chat.model.checkpoint import write_template_files
    from camel_chat.model.tiny import save_tiny
    from camel_chat.templates import get_template, to_jinja

    save_tiny(out, chat_template=to_jinja(get_template("vicuna_v1.1")))
    from transformers import AutoTokenizer

    write_template_files(out, AutoTokenizer.from_pretrained(out), "vicuna_v1.1")
    return out


def _slow_checkpoint(out: Path) -> Path:
    """A bigger random LLaMA (~5 s for 400 tokens on one CPU thread): a reply long enough to interrupt."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from camel_chat.model.checkpoint import save_pretrained_with_template
    from camel_chat.model.tiny import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=512, intermediate_size=1024, num_hidden_layers=8,
        num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=1024,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config).eval()
    save_pretrained_with_template(model, tok, "vicuna_v1.1", out)
    return out


@needs_tmux
@pytest.mark.slow
def test_tmux_chat_commands_and_ctrl_d(tmp_path: Path) -> None:
    checkpoint = _tiny_checkpoint(tmp_path / "tiny-vicuna")
    term = Tmux(cli_command(checkpoint, "--max-new-tokens", "16"), tmp_path, CLI_ENV)
    try:
        term.wait_prompt(1, timeout=60)
        term.type("hello there")
        screen = term.wait_prompt(2)
        assert "USER: hello there" in screen and "ASSISTANT: " in screen

        def saved(name: str, prompt: int) -> dict:
            term.type(f"!!save {name}")
            term.wait_prompt(prompt)
            return json.loads((tmp_path / name).read_text())

        first = saved("one.json", 3)
        assert first["template"] == "vicuna_v1.1"
        assert [m["role"] for m in first["messages"]] == ["user", "assistant"]
        assert first["messages"][0]["content"] == "hello there"
        term.type("!!reset")
        assert "resetting..." in term.wait_prompt(4)
        assert saved("empty.json", 5)["messages"] == []
        term.type("!!load one.json")
        assert "loading one.json..." in term.wait_prompt(6)
        assert saved("loaded.json", 7)["messages"] == first["messages"]
        term.type("!!regen")
        assert "regenerating last message..." in term.wait_prompt(8)
        regen = saved("regen.json", 9)["messages"]
        assert [m["role"] for m in regen] == ["user", "assistant"] and regen[0]["content"] == "hello there"
        term.type("!!remove")
        term.wait_prompt(10)
        assert saved("removed.json", 11)["messages"] == []
        term.send("C-d")
        term.wait(lambda s: "EXIT:0" in s, "a clean exit on Ctrl-D")
    finally:
        term.close()


@needs_tmux
@pytest.mark.slow
def test_tmux_ctrl_c_stops_the_reply_and_the_chat_goes_on(tmp_path: Path) -> None:
    checkpoint = _slow_checkpoint(tmp_path / "slow-vicuna")
    term = Tmux(cli_command(checkpoint, "--max-new-tokens", "400"), tmp_path, CLI_ENV)
    try:
        term.wait_prompt(1, timeout=60)
        term.type("Tell me a long story")
        term.wait(lambda s: len(s.split("ASSISTANT: ", 1)[-1].strip()) > 20 if "ASSISTANT: " in s else False,
                  "the reply to start streaming")  # fmt: skip
        started = time.monotonic()
        term.send("C-c")
        screen = term.wait_prompt(2, timeout=10)
        assert time.monotonic() - started < 4.0
        assert "[reply interrupted]" in screen
        term.type("!!save partial.json")
        assert "saving to partial.json..." in term.wait_prompt(3)
        messages = json.loads((tmp_path / "partial.json").read_text())["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant"]
        assert messages[1]["content"]  # what was said before Ctrl-C is kept
        term.type("!!exit")
        term.wait(lambda s: "EXIT:0" in s, "a clean exit on !!exit")
    finally:
        term.close()
