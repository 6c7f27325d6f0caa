"""lm-evaluation-harness itself (the `lm_eval` CLI, pinned in the `eval`/`dev` extras) against the
served tiny model: controller, model_worker and the OpenAI API server as real processes on free
ports, and the local task files in tests/evaluation/tasks (no network; lm_eval downloads nothing).

    camel_eval_mc   multiple choice (loglikelihood requests) through `local-completions`, with
                    token-id prompts (tokenized_requests=True) and with text (False)
    camel_eval_gen  generate_until through `local-chat-completions` (the worker's chat template)

Each choice's loglikelihood, read back from lm_eval's `--log_samples` output, equals the sum of
the continuation's token logprobs from a direct transformers forward pass on the same checkpoint
(to 1e-4), so the numbers lm_eval scores with are the model's, not placeholders.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_stack import api_stack
from lm_eval_run import lm_eval, offline_env, samples
from serving_stack import Stack, write_checkpoint

pytestmark = pytest.mark.slow
pytest.importorskip("lm_eval", reason="lm_eval is installed by `make test` (requirements.txt)")

ROOT = Path(__file__).resolve().parents[2]
TASKS = ROOT / "tests" / "evaluation" / "tasks"
MODEL = "Tiny-Eval"
CONTEXT_LENGTH = 512
TOL = 1e-4


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("lm-eval-served")
    checkpoint = write_checkpoint(root / "tiny-vicuna", CONTEXT_LENGTH)
    with api_stack(root, checkpoint, MODEL) as running:
        yield running


def loglikelihoods(rows: list[dict[str, Any]]) -> list[tuple[str, str, float]]:
    """(context, continuation, loglikelihood) per choice, as lm_eval logged them."""
    out = []
    for row in rows:
        for args, resp in zip(row["arguments"].values(), row["resps"], strict=True):
            out.append((args["arg_0"], args["arg_1"], float(resp[0][0])))
    return out


@pytest.fixture(scope="module")
def direct(stack: Stack) -> Any:
    """context, continuation -> loglikelihood from one transformers forward pass, tokenized as
    lm_eval does (no special tokens; the continuation = ids of the whole past the context's)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(stack.checkpoint)
    model = AutoModelForCausalLM.from_pretrained(stack.checkpoint, dtype=torch.float32).eval()

    def score(context: str, continuation: str) -> float:
        spaces = len(context) - len(context.rstrip())
        if spaces:  # lm_eval moves the context's trailing spaces onto the continuation
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
        start = len(tokenizer(context, add_special_tokens=False)["input_ids"])
        with torch.inference_mode():
            logprobs = torch.log_softmax(model(torch.tensor([whole])).logits[0].float(), dim=-1)
        return float(sum(logprobs[i - 1, whole[i]] for i in range(start, len(whole))))

    return score


def check_multiple_choice(out: Path, results: dict[str, Any], direct: Any) -> list[float]:
    metrics = results["results"]["camel_eval_mc"]
    assert 0.0 <= metrics["acc,none"] <= 1.0 and 0.0 <= metrics["acc_norm,none"] <= 1.0
    rows = samples(out, "camel_eval_mc")
    docs = [json.loads(line) for line in (TASKS / "camel_eval_mc.jsonl").read_text().splitlines()]
    assert len(rows) == len(docs)
    scored = loglikelihoods(rows)
    assert len(scored) == sum(len(d["choices"]) for d in docs)
    values = [v for _, _, v in scored]
    assert all(math.isfinite(v) and v < 0 for v in values)
    for row in rows:  # the choices of a question are told apart (not the 0.0 tie of issue 10)
        per_choice = [float(r[0][0]) for r in row["resps"]]
        assert len(set(per_choice)) == len(per_choice)
    for context, continuation, value in scored:
        assert value == pytest.approx(direct(context, continuation), abs=TOL), (context, continuation)
    return values


def test_multiple_choice_with_token_id_requests(stack: Stack, direct: Any, tmp_path: Path) -> None:
    args = {
        "base_url": f"{stack.api}/v1/completions",
        "model": MODEL,
        "tokenizer": stack.checkpoint,  # lm_eval tokenizes itself and sends the ids
        "tokenized_requests": "True",
        "max_length": CONTEXT_LENGTH,
        "num_concurrent": 2,
        "max_retries": 1,
    }
    results = lm_eval(tmp_path, "local-completions", args, "camel_eval_mc", "--batch_size", "4")
    check_multiple_choice(tmp_path, results, direct)


def test_multiple_choice_with_text_requests(stack: Stack, direct: Any, tmp_path: Path) -> None:
    args = {
        "base_url": f"{stack.api}/v1/completions",
        "model": MODEL,
        "tokenizer": stack.checkpoint,  # still used by lm_eval to count context tokens
        "tokenized_requests": "False",
        "max_length": CONTEXT_LENGTH,
        "num_concurrent": 1,
        "max_retries": 1,
    }
    results = lm_eval(tmp_path, "local-completions", args, "camel_eval_mc")
    check_multiple_choice(tmp_path, results, direct)


def test_generate_until_with_chat_completions(stack: Stack, tmp_path: Path) -> None:
    args = {
        "model": MODEL,
        "base_url": f"{stack.api}/v1/chat/completions",
        "num_concurrent": 1,
        "max_retries": 1,
    }
    results = lm_eval(tmp_path, "local-chat-completions", args, "camel_eval_gen", "--apply_chat_template")
    metrics = results["results"]["camel_eval_gen"]
    assert 0.0 <= metrics["exact_match,none"] <= 1.0
    rows = samples(tmp_path, "camel_eval_gen")
    assert len(rows) == 4
    for row in rows:
        # lm_eval sent the question as a chat message; the answer came back as text, cut at "\n".
        (message,) = json.loads(row["arguments"]["gen_args_0"]["arg_0"][0])
        assert message["role"] == "user" and row["doc"]["question"] in message["content"]
        (answer,) = row["resps"][0]
        assert isinstance(answer, str) and "\n" not in answer
    assert any(row["resps"][0][0] for row in rows)
    assert os.path.isdir(tmp_path / "hf-home")  # lm_eval's datasets cache went to the test's folder


def eval_tasks_script(stack: Stack, out: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """scripts/eval_tasks.sh against the served model, token-id requests, offline."""
    full = {
        **offline_env(out),
        "API_BASE": f"{stack.api}/v1",
        "MODEL": MODEL,
        "TOKENIZER": str(stack.checkpoint),
        "MAX_LENGTH": str(CONTEXT_LENGTH),
        "OUTPUT_DIR": str(out / "results"),
        "PYTHON": sys.executable,
        **env,
    }
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "eval_tasks.sh")],
        env=full, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def test_eval_tasks_script_scores_a_local_task_through_the_server(stack: Stack, tmp_path: Path) -> None:
    done = eval_tasks_script(stack, tmp_path, TASKS="camel_eval_mc", INCLUDE_PATH=str(TASKS))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "tokenized_requests=True" in done.stderr  # the command it ran, echoed with "+"
    lines = done.stdout.splitlines()  # lm_eval's own table, then our summary
    header = next(i for i, line in enumerate(lines) if line.split() == ["task", "metric", "value"])
    task, metric, value = lines[header + 1].split()
    assert (task, metric) == ("camel_eval_mc", "acc_norm") and 0.0 <= float(value) <= 100.0


def test_eval_tasks_script_says_the_seed_task_data_cannot_be_fetched(stack: Stack, tmp_path: Path) -> None:
    """The seed's task set (the default TASKS) offline: the first task's data is on the Hub."""
    done = eval_tasks_script(stack, tmp_path, LIMIT="2")
    assert done.returncode == 3, done.stderr[-3000:]
    assert "--tasks arc_challenge" in done.stderr
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith("error: lm_eval could not fetch") and "task arc_challenge" in message
    assert "offline" in message and "--include-path" in message
