"""The renderer: byte-exact Vicuna v1.1 (spec §5.1), the other templates' shapes, and the
segment rules (trainable spans, per-message independence)."""

from __future__ import annotations

import pytest

from camel_chat.conversation import Conversation, ConversationError
from camel_chat.templates import (
    SpecialTokens,
    generation_prompt,
    get_template,
    list_templates,
    render,
    render_text,
)

VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
# FastChat's prompt strings carry no BOS text: the tokenizer adds BOS in front.
NO_BOS = SpecialTokens(bos="", eos="</s>")


def test_vicuna_generation_prompt_matches_spec_worked_example() -> None:
    conv = Conversation.of(("user", "Hello!"), ("assistant", "Hi!"), ("user", "How are you?"))
    text = render_text(get_template("vicuna_v1.1"), conv, add_generation_prompt=True, special=NO_BOS)
    assert text == f"{VICUNA_SYSTEM} USER: Hello! ASSISTANT: Hi!</s>USER: How are you? ASSISTANT:"


def test_vicuna_training_string_matches_spec() -> None:
    conv = Conversation.of(("user", "h1"), ("assistant", "g1"), ("user", "h2"), ("assistant", "g2"))
    text = render_text(get_template("vicuna_v1.1"), conv, special=NO_BOS)
    assert text == f"{VICUNA_SYSTEM} USER: h1 ASSISTANT: g1</s>USER: h2 ASSISTANT: g2</s>"


def test_vicuna_with_bos_and_custom_and_empty_system() -> None:
    t = get_template("vicuna_v1.1")
    conv = Conversation.of(("user", "q"), ("assistant", "a"), system="Be brief.")
    assert render_text(t, conv) == "<s>Be brief. USER: q ASSISTANT: a</s>"
    empty = Conversation.of(("user", "q"), ("assistant", "a"), system="")
    # FastChat renders system + sep even for an empty system prompt.
    assert render_text(t, empty, special=NO_BOS) == " USER: q ASSISTANT: a</s>"


def test_vicuna_trainable_segments_are_reply_plus_eos() -> None:
    conv = Conversation.of(("user", "h1"), ("assistant", "g1"), ("user", "h2"), ("assistant", "g2"))
    segments = render(get_template("vicuna_v1.1"), conv)
    assert [s.text for s in segments if s.trainable] == [" g1</s>", " g2</s>"]
    assert {s.message for s in segments if s.trainable} == {1, 3}


def test_one_shot_matches_fastchat_add_colon_single() -> None:
    t = get_template("one_shot")
    conv = Conversation.of(("user", "Hi"), ("assistant", "Hello"), ("user", "Bye"))
    text = render_text(t, conv, add_generation_prompt=True, special=NO_BOS)
    system = t.default_system
    example_q, example_a = (c for _, c in t.examples)
    assert text == (
        f"{system}\n### Human: {example_q}\n### Assistant: {example_a}\n### "
        "Human: Hi\n### Assistant: Hello\n### Human: Bye\n### Assistant:"
    )
    assert example_q == "Got any creative ideas for a 10 year old’s birthday?"
    assert t.stop_strings(NO_BOS) == ["###"]


def test_chatml_matches_qwen_layout() -> None:
    t = get_template("chatml")
    conv = Conversation.of(("user", "Hi"), ("assistant", "Hello"), ("user", "Why?"))
    text = render_text(t, conv, add_generation_prompt=True, special=SpecialTokens("", "<|im_end|>"))
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n"
        "<|im_start|>user\nWhy?<|im_end|>\n<|im_start|>assistant\n"
    )
    trained = [
        s.text for s in render(t, Conversation.of(("user", "Hi"), ("assistant", "Hello"))) if s.trainable
    ]
    assert trained == ["Hello<|im_end|>"]  # the newline after <|im_end|> is not trained on
    assert t.stop_strings(SpecialTokens()) == ["<|im_end|>", "<|endoftext|>"]


def test_llama2_puts_system_inside_first_user_message() -> None:
    t = get_template("llama-2")
    conv = Conversation.of(("user", "u1"), ("assistant", "a1"), ("user", "u2"), system="S")
    assert render_text(t, conv, add_generation_prompt=True) == (
        "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nu1 [/INST] a1 </s><s>[INST] u2 [/INST]"
    )
    no_system = Conversation.of(("user", "u1"), ("assistant", "a1"))
    assert render_text(t, no_system) == "<s>[INST] u1 [/INST] a1 </s>"


def test_baichuan2_reserved_tokens() -> None:
    t = get_template("baichuan2")
    conv = Conversation.of(("user", "你好"), ("assistant", "您好"), ("user", "再见"))
    assert render_text(t, conv, add_generation_prompt=True) == (
        "<reserved_106>你好<reserved_107>您好</s><reserved_106>再见<reserved_107>"
    )


@pytest.mark.parametrize("name", ["vicuna_v1.1", "one_shot", "chatml", "llama-2", "baichuan2"])
def test_serving_prompt_is_training_render_minus_the_answer(name: str) -> None:
    t = get_template(name)
    history = Conversation.of(("user", "first question"), ("assistant", "first answer"), ("user", "second"))
    full = Conversation.of(*[(m.role, m.content) for m in history.messages], ("assistant", "ANSWER"))
    prompt = render_text(t, history, add_generation_prompt=True)
    train = render_text(t, full)
    assert train.startswith(prompt)
    assert "ANSWER" in train[len(prompt) :]
    assert prompt.endswith(generation_prompt(t))


def test_every_template_listed_and_unknown_name_is_clear() -> None:
    assert {"vicuna_v1.1", "one_shot", "chatml", "llama-2", "baichuan2"} <= set(list_templates())
    with pytest.raises(Exception, match=r"unknown template 'nope'.*vicuna_v1\.1"):
        get_template("nope")


def test_render_validates_role_order_naming_the_index() -> None:
    t = get_template("vicuna_v1.1")
    bad = Conversation.of(("user", "a"), ("user", "b"))
    with pytest.raises(ConversationError, match="message 1: roles-must-alternate"):
        render(t, bad)
    with pytest.raises(ConversationError, match="message 0: must-end-with-assistant"):
        render(t, Conversation.of(("user", "a")))
    with pytest.raises(ConversationError, match="must-end-with-user"):
        render(t, Conversation.of(("user", "a"), ("assistant", "b")), add_generation_prompt=True)


def test_module_docstring_example_holds() -> None:
    import doctest
    import importlib

    # importlib: the package re-exports a function named `render`, which shadows the module.
    render_module = importlib.import_module("camel_chat.templates.render")
    result = doctest.testmod(render_module)
    assert result.attempted >= 3 and result.failed == 0
