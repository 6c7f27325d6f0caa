"""lm-evaluation-harness runs of the seed's task set (spec §6.6), on a checkpoint or a served model.

    python -m camel_chat.evaluation.lm_eval_tasks run --model-path P --output-dir D [--tasks ...] [--dry-run]
    python -m camel_chat.evaluation.lm_eval_tasks run --api-base URL --model NAME --output-dir D [...]
    python -m camel_chat.evaluation.lm_eval_tasks summary --output-dir D
    python -m camel_chat.evaluation.lm_eval_tasks tiny-task DIR    # a 4-question smoke task

One `lm_eval` command per task, each writing under `D/<task>-<shots>-shots/`. A checkpoint uses
`--model hf`; a server uses `--model local-completions` (log-likelihood tasks need the
completions endpoint with echoed prompt logprobs) or, with `--chat`, `local-chat-completions`
(generation tasks only). lm_eval counts context tokens with the model's tokenizer: `--tokenizer`
(the served checkpoint's folder or Hub id) makes it send token ids (`tokenized_requests=True`,
exact); without it lm_eval loads the tokenizer named like the served model and sends text.
The seed's tasks fetch their data from the Hugging Face Hub on first use; when that fails (no
network, offline mode) the run stops with a message saying so and exit status 3.
The seed used harness commit 441e6ac (`hf-causal-experimental`, `hendrycksTest-*`,
`truthfulqa_mc`); the task names here are lm_eval ≥ 0.4's (`mmlu`, `truthfulqa_mc2`).
`summary` reads the result JSON files (0.4 layout `"acc_norm,none"`, or the old `"acc_norm"`)
and prints one line per task with the metric × 100, like the seed's `results_parser.py`.
lm_eval is an optional extra: `pip install 'camel_chat[eval]'` (lm_eval[api], the pinned version
the tests run against our server).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from camel_chat.errors import CamelChatError
from camel_chat.json_input import read_json

INSTALL_HINT = "lm_eval is not installed: pip install lm-eval  (server mode: pip install 'lm-eval[api]')"
#: Exit status when lm_eval could not fetch a task's data (no network / offline mode).
NO_DATA_EXIT = 3
#: What datasets / huggingface_hub print when the Hub cannot be reached.
_UNREACHABLE = re.compile(
    r"Couldn't reach '(?P<repo>[^']+)' on the Hub|LocalEntryNotFoundError|OfflineModeIsEnabled"
    r"|NameResolutionError|Network is unreachable|Temporary failure in name resolution"
)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    shots: int
    metrics: tuple[str, ...]  # first one found in the results is reported


SEED_TASKS: dict[str, TaskSpec] = {
    "arc_challenge": TaskSpec("arc_challenge", 25, ("acc_norm",)),
    "hellaswag": TaskSpec("hellaswag", 10, ("acc_norm",)),
    "mmlu": TaskSpec("mmlu", 5, ("acc_norm", "acc")),
    "truthfulqa_mc2": TaskSpec("truthfulqa_mc2", 0, ("mc2", "acc")),
}
DEFAULT_METRICS = ("acc_norm", "acc", "mc2", "exact_match", "f1")


def find_lm_eval(name: str) -> str | None:
    """`name` on PATH, else (for the default name) the lm_eval beside this Python: its venv need
    not be activated."""
    found = shutil.which(name)
    beside = Path(sys.executable).with_name("lm_eval")
    if found is None and name == "lm_eval" and beside.is_file():
        return str(beside)
    return found


def task_spec(entry: str) -> TaskSpec:
    """`name` (seed shots/metric, or 0 shots for other tasks) or `name:shots`."""
    name, _, shots = entry.partition(":")
    base = SEED_TASKS.get(name, TaskSpec(name, 0, DEFAULT_METRICS))
    return TaskSpec(name, int(shots), base.metrics) if shots else base


def task_dir(output_dir: str | Path, spec: TaskSpec) -> Path:
    return Path(output_dir) / f"{spec.name}-{spec.shots}-shots"


def model_arguments(args: argparse.Namespace) -> list[str]:
    if args.model_path:
        # Code shipped with a checkpoint runs only when asked (design §2.5).
        remote = ",trust_remote_code=True" if getattr(args, "trust_remote_code", False) else ""
        margs = f"pretrained={args.model_path}{remote},dtype={args.dtype}"
        return ["--model", "hf", "--model_args", margs, "--device", args.device]
    base = args.api_base.rstrip("/")
    if base.endswith("/v1"):
        base = base[: -len("/v1")]
    endpoint = "chat/completions" if args.chat else "completions"
    # Token ids when lm_eval has the served model's tokenizer (chat requests are always text).
    tokenized = bool(args.tokenizer) and not args.chat
    margs = (
        f"model={args.model},base_url={base}/v1/{endpoint},num_concurrent={args.num_concurrent},"
        f"max_retries=3,tokenized_requests={tokenized}"
    )
    if args.tokenizer:
        margs += f",tokenizer={args.tokenizer}"
    if args.max_length:
        margs += f",max_length={args.max_length}"
    out = ["--model", "local-chat-completions" if args.chat else "local-completions", "--model_args", margs]
    return [*out, "--apply_chat_template"] if args.chat else out


def build_commands(args: argparse.Namespace) -> list[list[str]]:
    commands = []
    for entry in args.tasks:
        spec = task_spec(entry)
        cmd = [args.lm_eval, *model_arguments(args), "--tasks", spec.name, "--num_fewshot", str(spec.shots)]
        cmd += ["--batch_size", str(args.batch_size), "--output_path", str(task_dir(args.output_dir, spec))]
        if args.include_path:
            cmd += ["--include_path", str(args.include_path)]
        if args.limit is not None:
            cmd += ["--limit", str(args.limit)]
        commands.append(cmd + list(args.extra))
    return commands


def run(args: argparse.Namespace) -> int:
    if not args.model_path and not (args.api_base and args.model):
        print("error: give --model-path, or --api-base and --model", file=sys.stderr)
        return 2
    commands = build_commands(args)
    if args.dry_run:
        for cmd in commands:
            print(shlex.join(cmd))
        return 0
    executable = find_lm_eval(args.lm_eval)
    if executable is None:
        print(f"error: {INSTALL_HINT}", file=sys.stderr)
        return 1
    commands = [[executable, *cmd[1:]] for cmd in commands]
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    for cmd in commands:
        print("+", shlex.join(cmd), file=sys.stderr, flush=True)
        rc, tail = call_teeing_stderr(cmd)
        if rc != 0:
            task = cmd[cmd.index("--tasks") + 1]
            missing = _UNREACHABLE.search(tail)
            if missing is not None:
                print(no_data_message(task, missing.group("repo")), file=sys.stderr)
                return NO_DATA_EXIT
            print(f"error: {task} failed (exit {rc})", file=sys.stderr)
            return rc
    print_summary(args.output_dir)
    return 0


def call_teeing_stderr(cmd: list[str], keep: int = 20_000) -> tuple[int, str]:
    """Run `cmd`, passing its stderr through as it comes; (exit status, the last `keep` chars)."""
    tail: deque[str] = deque()
    size = 0
    with subprocess.Popen(cmd, stderr=subprocess.PIPE) as proc:
        assert proc.stderr is not None
        while piece := proc.stderr.read1(4096):  # type: ignore[attr-defined]
            sys.stderr.buffer.write(piece)
            sys.stderr.buffer.flush()
            text = piece.decode(errors="replace")
            tail.append(text)
            size += len(text)
            while size - len(tail[0]) > keep:
                size -= len(tail.popleft())
    return proc.returncode, "".join(tail)


def no_data_message(task: str, repo: str | None) -> str:
    where = f"'{repo}' from the Hugging Face Hub" if repo else "its data from the Hugging Face Hub"
    return (
        f"error: lm_eval could not fetch {where} for task {task}: no network, or offline mode "
        "(HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) is set. The seed's tasks (arc_challenge, hellaswag, "
        "mmlu, truthfulqa_mc2) download their data on first use and are cached afterwards (under "
        "$HF_HOME, default ~/.cache/huggingface): run once with network access, or evaluate local "
        "task files (--include-path DIR / INCLUDE_PATH=DIR)."
    )


# ---- summary -----------------------------------------------------------------------------


def _metric(values: dict[str, Any], metric: str) -> float | None:
    for key in (f"{metric},none", metric):
        if isinstance(values.get(key), int | float) and not isinstance(values.get(key), bool):
            return float(values[key])
    for key, value in values.items():  # another filter, e.g. "exact_match,strict-match"
        if key.split(",")[0] == metric and isinstance(value, int | float):
            return float(value)
    return None


def result_files(output_dir: str | Path) -> list[Path]:
    files = []
    for path in sorted(Path(output_dir).rglob("*.json")):
        try:
            data = read_json(path)
        except CamelChatError:  # not a result file we can read (lm_eval writes others too)
            continue
        if isinstance(data, dict) and isinstance(data.get("results"), dict):
            files.append(path)
    return files


def summarize(output_dir: str | Path) -> list[tuple[str, str, float]]:
    """(task, metric, value × 100) per task; a later result file (by name) overrides an earlier one.

    The old harness has no `mmlu` group: its 57 `hendrycksTest-*` subjects are averaged.
    """
    results: dict[str, dict[str, Any]] = {}
    for path in sorted(result_files(output_dir), key=lambda p: (p.parent, p.name)):
        results.update(read_json(path)["results"])
    rows: list[tuple[str, str, float]] = []
    subtasks = {n for n in results if n.startswith(("mmlu_", "hendrycksTest-"))}
    for name, values in results.items():
        if name in subtasks or not isinstance(values, dict):
            continue
        spec = task_spec(name)
        if name == "truthfulqa_mc":
            spec = TaskSpec(name, 0, ("mc2",))
        for metric in spec.metrics:
            value = _metric(values, metric)
            if value is not None:
                rows.append((name, metric, round(value * 100, 2)))
                break
    old_mmlu = [results[n] for n in sorted(subtasks) if n.startswith("hendrycksTest-")]
    if old_mmlu and "mmlu" not in results:
        values = [v for v in (_metric(r, "acc_norm") for r in old_mmlu) if v is not None]
        if values:
            rows.append(("mmlu", "acc_norm", round(sum(values) / len(values) * 100, 2)))
    return rows


def format_table(rows: Sequence[tuple[str, str, float]]) -> str:
    lines = [f"{'task':<24} {'metric':<10} {'value':>7}"]
    lines += [f"{task:<24} {metric:<10} {value:>7.2f}" for task, metric, value in rows]
    if rows:
        lines.append(f"{'average':<24} {'':<10} {sum(r[2] for r in rows) / len(rows):>7.2f}")
    return "\n".join(lines)


def print_summary(output_dir: str | Path) -> int:
    rows = summarize(output_dir)
    if not rows:
        print(f"error: no lm_eval result file under {output_dir}", file=sys.stderr)
        return 1
    print(format_table(rows))
    return 0


# ---- a tiny local task (smoke tests of the served stack) -------------------------------------

TINY_TASK = "camel_tiny_mc"
TINY_DOCS = [
    {"question": "What colour is the sky on a clear day?", "choices": ["blue", "green", "red"], "answer": 0},
    {"question": "How many legs does a cat have?", "choices": ["two", "four", "six"], "answer": 1},
    {"question": "Which number is the largest?", "choices": ["3", "7", "10"], "answer": 2},
    {"question": "What do bees make?", "choices": ["honey", "milk", "silk"], "answer": 0},
]


def write_tiny_task(directory: str | Path, name: str = TINY_TASK) -> Path:
    """Write `<dir>/<name>.yaml` (lm_eval task format) and its JSONL data; returns the YAML path."""
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / f"{name}.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in TINY_DOCS), encoding="utf-8")
    yaml_path = directory / f"{name}.yaml"
    yaml_path.write_text(
        f"task: {name}\n"
        "dataset_path: json\n"
        "dataset_kwargs:\n"
        "  data_files:\n"
        f"    test: {json.dumps(str(data))}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        'doc_to_text: "Question: {{question}}\\nAnswer:"\n'
        "doc_to_choice: choices\n"
        "doc_to_target: answer\n"
        "metric_list:\n"
        "  - metric: acc\n"
        "    aggregation: mean\n"
        "    higher_is_better: true\n"
        "metadata:\n"
        "  version: 1.0\n",
        encoding="utf-8",
    )
    return yaml_path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m camel_chat.evaluation.lm_eval_tasks", description=__doc__.split("\n\n")[0]
    )
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run lm_eval on the task set")
    who = r.add_mutually_exclusive_group(required=True)
    who.add_argument("--model-path", help="local checkpoint (lm_eval --model hf)")
    who.add_argument("--api-base", help="OpenAI-compatible server, e.g. http://localhost:8000/v1")
    r.add_argument("--model", help="served model name (with --api-base)")
    r.add_argument("--chat", action="store_true", help="local-chat-completions (generation tasks only)")
    r.add_argument(
        "--tokenizer",
        help="server mode: the served model's tokenizer (folder or Hub id); lm_eval then sends token ids",
    )
    r.add_argument("--max-length", type=int, help="server mode: the served model's context length")
    r.add_argument("--num-concurrent", type=int, default=1)
    r.add_argument("--tasks", nargs="+", default=list(SEED_TASKS), help="names, optionally name:shots")
    r.add_argument("--output-dir", required=True)
    r.add_argument("--include-path", help="directory of extra task YAML files")
    r.add_argument("--batch-size", default="auto")
    r.add_argument("--device", default="cuda")
    r.add_argument("--dtype", default="float16")
    r.add_argument(
        "--trust-remote-code", action="store_true", help="let lm_eval run code shipped with --model-path"
    )
    r.add_argument("--limit", type=float, default=None, help="examples per task (testing)")
    r.add_argument("--lm-eval", default="lm_eval", help="the lm_eval executable")
    r.add_argument("--dry-run", action="store_true", help="print the commands only")
    r.add_argument("extra", nargs=argparse.REMAINDER, help="after --: more lm_eval flags")
    s = sub.add_parser("summary", help="table of the result files under --output-dir")
    s.add_argument("--output-dir", required=True)
    t = sub.add_parser("tiny-task", help="write a 4-question local task (YAML + JSONL) into DIR")
    t.add_argument("directory")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        while args.extra and args.extra[0] == "--":
            args.extra = args.extra[1:]
        if args.limit is not None and args.limit.is_integer():
            args.limit = int(args.limit)
        return run(args)
    if args.command == "summary":
        return print_summary(args.output_dir)
    print(write_tiny_task(args.directory))
    return 0


if __name__ == "__main__":
    sys.exit(main())
