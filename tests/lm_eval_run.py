"""lm-evaluation-harness's CLI run offline against a served model, for the tests: the local task
files in tests/evaluation/tasks, nothing downloaded, the datasets cache under the output folder.

    results = lm_eval(out, "local-completions", {"model": "m", "base_url": ...}, "camel_eval_mc")
    rows = samples(out, "camel_eval_mc")     # what --log_samples wrote
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from api_stack import API_KEY
from serving_stack import ENV

ROOT = Path(__file__).resolve().parents[1]
TASKS = ROOT / "tests" / "evaluation" / "tasks"


def offline_env(out: Path) -> dict[str, str]:
    return {
        **ENV,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(out / "hf-home"),  # the datasets cache lands here, not in ~/.cache
        "OPENAI_API_KEY": API_KEY,  # local-completions sends it as the bearer token
    }


def lm_eval(out: Path, model: str, model_args: dict[str, Any], task: str, *extra: str) -> dict[str, Any]:
    """Run `lm_eval run --model MODEL --model_args K=V,...` (`model_args` names the served model)
    offline in the repository root (the YAML data paths are relative to it); return the results
    JSON it wrote."""
    env = offline_env(out)
    margs = ",".join(f"{k}={v}" for k, v in model_args.items())
    command = [
        sys.executable, "-m", "lm_eval", "run", "--model", model, "--model_args", margs,
        "--tasks", task, "--include_path", str(TASKS), "--output_path", str(out), "--log_samples", *extra,
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (results,) = out.rglob("results_*.json")
    return json.loads(results.read_text(encoding="utf-8"))


def samples(out: Path, task: str) -> list[dict[str, Any]]:
    (path,) = out.rglob(f"samples_{task}_*.jsonl")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
