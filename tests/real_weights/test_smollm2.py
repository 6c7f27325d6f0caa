"""SmolLM2-135M-Instruct end to end: the import is exact, the served model (through the `openai`
client) and the terminal chat (in tmux) answer a factual question, a short LoRA fine-tune lowers
the held-out loss on fictional facts, and its merge computes the adapter's logits (what the tuned
models *say* is in test_teaching.py).

Each test takes well under a minute on 2 CPU cores once the model is cached (see conftest.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from terminal import CLI_ENV, Tmux, cli_command, needs_tmux

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
FACTS = REPO_ROOT / "samples" / "facts"
PROMPT = [{"role": "user", "content": "What is the capital of France?"}]
CONVERSATIONS: list[list[dict[str, str]]] = [
    PROMPT,
    [{"role": "system", "content": "Be brief."}, *PROMPT],
    [{"role": "system", "content": ""}, *PROMPT],
    [*PROMPT, {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "And of Italy?"}],
]


def _logits(model: Any, ids: list[int]) -> Any:
    import torch

    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids]), use_cache=False).logits[0].float()


def test_import_equals_the_gguf(smollm2_gguf: Path, smollm2_dir: Path) -> None:
    """Same logits as transformers' own GGUF load, same tokens, same chat prompts, a clean config."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from camel_chat.model.import_gguf import load_gguf

    gguf_model, gguf_tokenizer = load_gguf(smollm2_gguf)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    assert type(model).__name__ == "LlamaForCausalLM" and model.dtype == gguf_model.dtype
    assert getattr(model.config, "quantization_config", None) is None
    for messages in CONVERSATIONS:
        ours = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        theirs = gguf_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert ours == theirs
    ids = tokenizer.encode(ours, add_special_tokens=False)
    assert ids == gguf_tokenizer.encode(theirs, add_special_tokens=False)
    assert (_logits(model, ids) - _logits(gguf_model, ids)).abs().max().item() == 0.0
    metadata = json.loads((smollm2_dir / "camel_chat.json").read_text())
    assert metadata["template"] == "smollm2" and len(metadata["source"]["sha256"]) == 64
    generation = json.loads((smollm2_dir / "generation_config.json").read_text())
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in generation["eos_token_id"]
    assert (generation["temperature"], generation["top_p"]) == (0.2, 0.9)


def test_served_model_answers_with_the_openai_client(smollm2_dir: Path, tmp_path: Path) -> None:
    """controller + model_worker + openai_api_server on free ports; greedy; the official client."""
    import openai
    from serving_stack import serving_stack

    with serving_stack(tmp_path, checkpoint=smollm2_dir, model="smollm2", api_keys="") as stack:
        client = openai.OpenAI(base_url=f"{stack.api}/v1", api_key="none")
        reply = client.chat.completions.create(
            model="smollm2",
            messages=PROMPT,
            temperature=0,
            max_tokens=24,  # type: ignore[arg-type]
        )
        streamed = "".join(
            chunk.choices[0].delta.content or ""
            for chunk in client.chat.completions.create(
                model="smollm2",
                messages=PROMPT,
                temperature=0,
                max_tokens=24,
                stream=True,  # type: ignore[arg-type]
            )
            if chunk.choices
        )
    text = reply.choices[0].message.content or ""
    assert "Paris" in text, text
    assert streamed == text
    assert reply.choices[0].finish_reason == "stop"  # it ended its turn (<|im_end|>), not the limit


def test_lora_finetune_lowers_heldout_loss(smollm2_dir: Path, facts_adapter: Path) -> None:
    """8 LoRA steps (batch 8, 3 epochs) on 24 paraphrased questions about 4 fictional facts; the
    held-out file asks 8 *other* paraphrases with the same answers. Measured here: 2.76 → 0.03."""
    from camel_chat.evaluation.heldout_loss import heldout_loss

    held = FACTS / "heldout.json"
    before = heldout_loss(smollm2_dir, held, "smollm2", max_length=128)
    after = heldout_loss(smollm2_dir, held, "smollm2", lora_path=facts_adapter, max_length=128)
    assert before.tokens == after.tokens > 100
    assert before.loss > 2.0, before
    assert after.loss < before.loss / 4, (before, after)


def test_merged_adapter_has_the_adapters_logits(
    smollm2_dir: Path, facts_adapter: Path, tmp_path: Path
) -> None:
    """apply_lora's merged checkpoint computes what base + adapter (PeftModel) computes."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from camel_chat.model.loader import load_model

    merged_dir = tmp_path / "merged"
    cmd = [sys.executable, "-m", "camel_chat.model.apply_lora", "--base-model-path", str(smollm2_dir),
           "--target-model-path", str(merged_dir), "--lora-path", str(facts_adapter)]  # fmt: skip
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=900
    )  # generous: a shared CPU can be 10x slower
    assert proc.returncode == 0, proc.stderr[-3000:]
    tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    question = [{"role": "user", "content": "Who invented the glimmerphone?"}]
    prompt = tokenizer.apply_chat_template(question, tokenize=False, add_generation_prompt=True)
    ids = tokenizer.encode(prompt + "The glimmerphone was invented by", add_special_tokens=False)
    peft_model = load_model(smollm2_dir, dtype="float32", adapter_path=facts_adapter)
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    assert type(merged).__name__ == "LlamaForCausalLM"
    adapted, folded = _logits(peft_model, ids), _logits(merged, ids)
    # fp32 rounding over 30 layers: measured 1.2e-4 on logits of magnitude ~20
    assert (folded - adapted).abs().max().item() < 1e-3
    assert folded.argmax(-1).tolist() == adapted.argmax(-1).tolist()  # the same greedy tokens
    with peft_model.disable_adapter():
        base = _logits(peft_model, ids)
    assert (adapted - base).abs().max().item() > 1.0  # ...and the adapter did change the model
    assert json.loads((merged_dir / "camel_chat.json").read_text())["template"] == "smollm2"


@needs_tmux
def test_terminal_chat_in_tmux_answers_greedily(smollm2_dir: Path, tmp_path: Path) -> None:
    """The real CLI in tmux, as a person runs it: greedy (--temperature 0), a factual question, a
    follow-up that needs the first turn, then `!!save` keeps both turns and Ctrl-D exits."""
    term = Tmux(cli_command(smollm2_dir, "--temperature", "0", "--max-new-tokens", "40"), tmp_path, CLI_ENV)
    try:
        term.wait_prompt(1, timeout=120)  # loading 135M parameters on a busy CPU
        term.type("What is the capital of France?")
        screen = term.wait_prompt(2, timeout=120)
        reply = screen.split("ASSISTANT:", 1)[1].split("USER:", 1)[0]
        assert "Paris" in reply, screen
        term.type("!!save chat.json")
        term.wait_prompt(3)
        saved = json.loads((tmp_path / "chat.json").read_text())
        assert saved["template"] == "smollm2"
        assert [m["role"] for m in saved["messages"]] == ["user", "assistant"]
        assert "Paris" in saved["messages"][1]["content"]
        term.send("C-d")
        term.wait(lambda s: "EXIT:0" in s, "a clean exit on Ctrl-D")
    finally:
        term.close()
