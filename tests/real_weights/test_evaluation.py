"""Evaluation through the served API scores a real model above noise. SmolLM2-135M-Instruct and
a tiny random model, each behind controller + model_worker + API server, are evaluated by
- lm-evaluation-harness's `local-completions` (token-id prompts, real loglikelihoods) on the
  local multiple-choice task tests/evaluation/tasks/camel_eval_mc (6 questions, 3 choices:
  chance is 1/3), and
- KAgentBench (`kagentbench infer` with kagentsys's sampling, then the original scoring) on the
  bundled sample records samples/kagentbench/benchmark_eval.jsonl (one of each record type,
  two planning ones).
The figures are printed; docs/BENCHMARKS.md records a run of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from api_stack import API_KEY, api_stack
from lm_eval_run import lm_eval
from serving_stack import write_checkpoint

pytestmark = pytest.mark.slow
pytest.importorskip("lm_eval", reason="lm_eval is installed by `make test` (requirements.txt)")

REPO_ROOT = Path(__file__).resolve().parents[2]
KAGENT_SAMPLE = REPO_ROOT / "samples" / "kagentbench" / "benchmark_eval.jsonl"
TASK = "camel_eval_mc"


def _evaluate(root: Path, checkpoint: Path, model: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(lm_eval's metrics for TASK, KAgentBench's scores) of `checkpoint` served as `model`."""
    from camel_chat.evaluation import kagentbench
    from camel_chat.evaluation.kagent_scoring import format_result_line, score_benchmark

    root.mkdir(parents=True, exist_ok=True)
    predictions = root / "kagent-pred.jsonl"
    with api_stack(root, checkpoint, model) as stack:
        args = {
            "model": model,
            "base_url": f"{stack.api}/v1/completions",
            "tokenizer": checkpoint,
            "tokenized_requests": "True",
            "max_length": 256,
            "num_concurrent": 2,
            "max_retries": 1,
        }
        metrics = lm_eval(root / "out", "local-completions", args, TASK, "--batch_size", "4")["results"][TASK]
        infer = ["infer", "--api-base", f"{stack.api}/v1", "--model", model, "--api-key", API_KEY,
                 "--eval-file", str(KAGENT_SAMPLE), "--out", str(predictions),
                 "--max-tokens", "64", "--retries", "1"]  # fmt: skip
        assert kagentbench.main(infer) == 0
    records = [json.loads(line) for line in KAGENT_SAMPLE.read_text(encoding="utf-8").splitlines()]
    preds = [json.loads(line) for line in predictions.read_text(encoding="utf-8").splitlines()]
    scores = score_benchmark(records, preds)
    print(f"{model}: {TASK} acc {metrics['acc,none']:.3f}, acc_norm {metrics['acc_norm,none']:.3f}")
    print(f"{model}: KAgentBench sample {format_result_line(scores)}")
    return metrics, scores


def test_smollm2_scores_above_chance_and_above_a_random_model(smollm2_dir: Path, tmp_path: Path) -> None:
    real_mc, real_agent = _evaluate(tmp_path / "smollm2", smollm2_dir, "smollm2")
    tiny = write_checkpoint(tmp_path / "tiny-vicuna", 2048)  # room for the agent prompts
    noise_mc, noise_agent = _evaluate(tmp_path / "tiny", tiny, "tiny-random")
    # acc_norm (loglikelihood per byte of the choice) is the measure for choices of unequal length:
    # raw acc favours the shortest ("a bird" over "a fish" loses to length, not to knowledge).
    assert real_mc["acc_norm,none"] >= 4 / 6 > 1 / 3  # at least 4 of 6 right where chance gets 2
    assert real_mc["acc_norm,none"] > noise_mc["acc_norm,none"]
    assert real_agent["overall"] > noise_agent["overall"]
