"""Fine-tunes that teach, judged by what the *served* model says: SmolLM2-135M-Instruct is
trained on four fictional facts (samples/facts/train.json, 24 paraphrased questions) by LoRA,
QLoRA (4-bit NF4 base on CPU) and full fine-tuning; controller + model_worker + API serve each
result, and the official `openai` client asks the 8 *unseen* paraphrases of samples/facts/
heldout.json, greedy. The base model's answers contain none of the facts; each fine-tune's contain
most of them. The LoRA adapter, merged by `apply_lora` and served, answers what base + adapter
generates in-process.

The trained models come from the session fixtures in conftest.py (each a few minutes on 2 CPU
cores); the answers of every run are printed, so a failure shows what the model said.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
HELDOUT = REPO_ROOT / "samples" / "facts" / "heldout.json"
#: The word of each taught fact that the base model cannot produce by chance.
FACT_WORDS = {"Zorbia": "Quillton", "mascot": "Humphrey", "glimmerphone": "Vantrell", "moonfruit": "teal"}
MAX_TOKENS = 32


def _questions() -> list[tuple[str, str]]:
    """(unseen question, the fact word its answer must contain), from heldout.json."""
    pairs = []
    for record in json.loads(HELDOUT.read_text()):
        question, answer = (turn["value"] for turn in record["conversations"])
        words = [word for topic, word in FACT_WORDS.items() if topic.lower() in question.lower()]
        assert len(words) == 1 and words[0] in answer, (question, answer)  # the data says what we test
        pairs.append((question, words[0]))
    return pairs


def _served_answers(root: Path, checkpoint: Path, questions: list[str]) -> list[str]:
    """The greedy answers of `checkpoint` served by controller + model_worker + API server."""
    import openai
    from serving_stack import serving_stack

    root.mkdir(parents=True, exist_ok=True)
    with serving_stack(root, checkpoint=checkpoint, model="smollm2", api_keys="") as stack:
        client = openai.OpenAI(base_url=f"{stack.api}/v1", api_key="none")
        answers = []
        for question in questions:
            reply = client.chat.completions.create(
                model="smollm2",
                messages=[{"role": "user", "content": question}],
                temperature=0,
                max_tokens=MAX_TOKENS,
            )
            answers.append(reply.choices[0].message.content or "")
    for question, answer in zip(questions, answers, strict=True):
        print(f"{checkpoint.name}: {question!r} -> {answer!r}")
    return answers


def _knows(answers: list[str], pairs: list[tuple[str, str]]) -> int:
    return sum(word.lower() in answer.lower() for answer, (_, word) in zip(answers, pairs, strict=True))


def _merge(base: Path, adapter: Path, out: Path) -> Path:
    cmd = [sys.executable, "-m", "camel_chat.model.apply_lora", "--base-model-path", str(base),
           "--target-model-path", str(out), "--lora-path", str(adapter)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_the_base_model_does_not_know_the_facts(smollm2_dir: Path, tmp_path: Path) -> None:
    pairs = _questions()
    answers = _served_answers(tmp_path, smollm2_dir, [q for q, _ in pairs])
    assert _knows(answers, pairs) == 0, answers


def test_lora_teaches_and_its_merge_serves_what_the_adapter_generates(
    smollm2_dir: Path, facts_adapter: Path, tmp_path: Path
) -> None:
    import torch
    from transformers import AutoTokenizer

    from camel_chat.model.loader import load_model

    pairs = _questions()
    questions = [q for q, _ in pairs]
    merged = _merge(smollm2_dir, facts_adapter, tmp_path / "lora-merged")
    answers = _served_answers(tmp_path / "serve", merged, questions)
    assert _knows(answers, pairs) >= 6, answers

    # The same greedy answers from the unmerged adapter on its base, generated in-process.
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    model = load_model(smollm2_dir, dtype="float32", adapter_path=facts_adapter)
    for question, served in zip(questions, answers, strict=True):
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
        ids = torch.tensor([tokenizer.encode(prompt, add_special_tokens=False)])
        with torch.inference_mode():
            out = model.generate(input_ids=ids, max_new_tokens=MAX_TOKENS, do_sample=False)
        generated = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
        assert generated.strip() == served.strip(), (question, generated, served)


def test_qlora_4bit_teaches(smollm2_dir: Path, facts_qlora_adapter: Path, tmp_path: Path) -> None:
    pairs = _questions()
    merged = _merge(smollm2_dir, facts_qlora_adapter, tmp_path / "qlora-merged")
    answers = _served_answers(tmp_path / "serve", merged, [q for q, _ in pairs])
    assert _knows(answers, pairs) >= 6, answers


def test_full_finetune_teaches(facts_full_checkpoint: Path, tmp_path: Path) -> None:
    pairs = _questions()
    answers = _served_answers(tmp_path, facts_full_checkpoint, [q for q, _ in pairs])
    assert _knows(answers, pairs) >= 6, answers
