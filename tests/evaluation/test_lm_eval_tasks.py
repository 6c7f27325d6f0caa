"""lm_eval command construction, the result summary and a tiny local task (offline; spec §6.6)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from camel_chat.evaluation import lm_eval_tasks as lt

ROOT = Path(__file__).resolve().parents[2]


def commands(capsys: pytest.CaptureFixture[str], *argv: str) -> list[list[str]]:
    assert lt.main(["run", "--dry-run", *argv]) == 0
    return [shlex.split(line) for line in capsys.readouterr().out.splitlines()]


def flag(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def test_hf_commands(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cmds = commands(capsys, "--model-path", "/models/camel 7b", "--output-dir", str(tmp_path))
    assert [flag(c, "--tasks") for c in cmds] == ["arc_challenge", "hellaswag", "mmlu", "truthfulqa_mc2"]
    assert [flag(c, "--num_fewshot") for c in cmds] == ["25", "10", "5", "0"]
    for cmd in cmds:
        assert cmd[0] == "lm_eval"
        assert flag(cmd, "--model") == "hf"
        # the seed passed trust_remote_code=True always; here only --trust-remote-code does
        assert flag(cmd, "--model_args") == "pretrained=/models/camel 7b,dtype=float16"
        assert flag(cmd, "--device") == "cuda"
    asked = commands(capsys, "--model-path", "/m", "--output-dir", str(tmp_path), "--trust-remote-code")
    assert flag(asked[0], "--model_args") == "pretrained=/m,trust_remote_code=True,dtype=float16"
    assert flag(cmds[0], "--output_path") == str(tmp_path / "arc_challenge-25-shots")
    assert len({flag(c, "--output_path") for c in cmds}) == 4


def test_api_commands(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--api-base", "http://127.0.0.1:8000/v1/", "--model", "tiny", "--output-dir", "out"]
    cmds = commands(capsys, *argv, "--tasks", "hellaswag:2", "--limit", "8", "--", "--seed", "1")
    (cmd,) = cmds
    assert flag(cmd, "--model") == "local-completions"
    margs = flag(cmd, "--model_args").split(",")
    assert "model=tiny" in margs and "base_url=http://127.0.0.1:8000/v1/completions" in margs
    assert (flag(cmd, "--num_fewshot"), flag(cmd, "--limit"), cmd[-2:]) == ("2", "8", ["--seed", "1"])
    assert "--device" not in cmd
    (chat,) = commands(capsys, *argv, "--chat", "--tasks", "gsm8k", "--tokenizer", "gpt2")
    assert flag(chat, "--model") == "local-chat-completions"
    assert "base_url=http://127.0.0.1:8000/v1/chat/completions" in flag(chat, "--model_args")
    assert "tokenizer=gpt2" in flag(chat, "--model_args")
    assert "--apply_chat_template" in chat and flag(chat, "--num_fewshot") == "0"


def test_api_token_ids_with_a_tokenizer(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--api-base", "http://h:8000/v1", "--model", "tiny", "--output-dir", "o", "--tasks", "mmlu"]
    (plain,) = commands(capsys, *argv)
    assert "tokenized_requests=False" in flag(plain, "--model_args").split(",")
    (ids,) = commands(capsys, *argv, "--tokenizer", "/ckpt/tiny", "--max-length", "512")
    margs = flag(ids, "--model_args").split(",")
    assert {"tokenized_requests=True", "tokenizer=/ckpt/tiny", "max_length=512"} <= set(margs)
    (chat,) = commands(capsys, *argv, "--chat", "--tokenizer", "/ckpt/tiny")
    assert "tokenized_requests=False" in flag(chat, "--model_args").split(",")  # chat is always text


def test_task_data_that_cannot_be_fetched_is_reported(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A stand-in lm_eval that fails as datasets does offline: exit 3 and a message saying why."""
    fake = tmp_path / "lm_eval"
    fake.write_text(
        "#!/bin/sh\necho \"ConnectionError: Couldn't reach 'allenai/ai2_arc' on the Hub "
        '(LocalEntryNotFoundError)" >&2\nexit 1\n',
        encoding="utf-8",
    )
    fake.chmod(0o755)
    argv = ["run", "--api-base", "http://h/v1", "--model", "m", "--output-dir", str(tmp_path / "o")]
    assert lt.main([*argv, "--lm-eval", str(fake)]) == lt.NO_DATA_EXIT == 3
    err = capsys.readouterr().err
    assert "Couldn't reach 'allenai/ai2_arc'" in err  # lm_eval's own stderr was passed through
    assert "could not fetch 'allenai/ai2_arc' from the Hugging Face Hub for task arc_challenge" in err
    fake.write_text("#!/bin/sh\necho 'some other failure' >&2\nexit 5\n", encoding="utf-8")
    assert lt.main([*argv, "--lm-eval", str(fake)]) == 5
    assert "error: arc_challenge failed (exit 5)" in capsys.readouterr().err


def test_api_needs_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert lt.main(["run", "--api-base", "http://x/v1", "--output-dir", "o", "--dry-run"]) == 2


def test_run_without_lm_eval_says_how_to_install(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = str(tmp_path / "no-lm_eval")
    assert lt.main(["run", "--model-path", "m", "--output-dir", str(tmp_path), "--lm-eval", missing]) == 1
    assert "pip install lm-eval" in capsys.readouterr().err


def test_tiny_task_file_referenced_by_include_path(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    tasks = tmp_path / "tasks"
    yaml_path = lt.write_tiny_task(tasks)
    config = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    assert config["task"] == lt.TINY_TASK and config["output_type"] == "multiple_choice"
    assert config["doc_to_choice"] == "choices" and config["doc_to_target"] == "answer"
    assert config["metric_list"][0]["metric"] == "acc"
    data = Path(config["dataset_kwargs"]["data_files"]["test"])
    docs = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()]
    assert docs == lt.TINY_DOCS
    assert all(0 <= d["answer"] < len(d["choices"]) for d in docs)
    assert "{{question}}" in config["doc_to_text"]
    (cmd,) = commands(
        capsys, "--api-base", "http://h:8000/v1", "--model", "tiny", "--output-dir", "o",
        "--tasks", lt.TINY_TASK, "--include-path", str(tasks),
    )  # fmt: skip
    assert flag(cmd, "--include_path") == str(tasks)
    assert flag(cmd, "--tasks") == lt.TINY_TASK
    assert Path(flag(cmd, "--include_path"), f"{flag(cmd, '--tasks')}.yaml").is_file()


def write_v04(path: Path, results: dict, n_shot: dict) -> None:
    """A result file in lm_eval 0.4's layout (<output_path>/<model>/results_<date>.json)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "results": results,
        "group_subtasks": {},
        "configs": {},
        "versions": {k: 1.0 for k in results},
        "n-shot": n_shot,
        "higher_is_better": {},
        "n-samples": {},
        "config": {"model": "hf", "model_args": "pretrained=m", "batch_size": "auto"},
        "git_hash": "abc",
        "date": 1.0,
    }
    path.write_text(json.dumps(doc), encoding="utf-8")


def test_summary_v04_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = "__models__camel"
    write_v04(
        tmp_path / "arc_challenge-25-shots" / model / "results_2024-01-01T00-00-00.json",
        {"arc_challenge": {"alias": "arc_challenge", "acc,none": 0.4, "acc_stderr,none": 0.01,
                           "acc_norm,none": 0.4321, "acc_norm_stderr,none": 0.01}},
        {"arc_challenge": 25},
    )  # fmt: skip
    write_v04(
        tmp_path / "mmlu-5-shots" / model / "results_2024-01-01T00-00-00.json",
        {"mmlu": {"alias": "mmlu", "acc,none": 0.25, "acc_stderr,none": 0.003},
         "mmlu_abstract_algebra": {"alias": " - abstract_algebra", "acc,none": 0.9}},
        {"mmlu_abstract_algebra": 5},
    )  # fmt: skip
    write_v04(
        tmp_path / "truthfulqa_mc2-0-shots" / model / "results_2024-01-01T00-00-00.json",
        {"truthfulqa_mc2": {"alias": "truthfulqa_mc2", "acc,none": 0.5, "acc_stderr,none": 0.01}},
        {"truthfulqa_mc2": 0},
    )  # fmt: skip
    (tmp_path / "notes.json").write_text("[1, 2]", encoding="utf-8")  # not a result file: ignored
    assert lt.summarize(tmp_path) == [
        ("arc_challenge", "acc_norm", 43.21),
        ("mmlu", "acc", 25.0),
        ("truthfulqa_mc2", "acc", 50.0),
    ]
    assert lt.main(["summary", "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["task", "metric", "value"]
    assert out[1].split() == ["arc_challenge", "acc_norm", "43.21"]
    assert out[-1].split() == ["average", "39.40"]


def test_summary_old_harness_layout(tmp_path: Path) -> None:
    results = {
        "hellaswag": {"acc": 0.5, "acc_stderr": 0.01, "acc_norm": 0.61234, "acc_norm_stderr": 0.01},
        "truthfulqa_mc": {"mc1": 0.2, "mc1_stderr": 0.01, "mc2": 0.35, "mc2_stderr": 0.01},
        "hendrycksTest-anatomy": {"acc": 0.2, "acc_norm": 0.3},
        "hendrycksTest-virology": {"acc": 0.3, "acc_norm": 0.5},
    }
    (tmp_path / "camel-all-shots.json").write_text(json.dumps({"results": results, "versions": {}}), "utf-8")
    assert lt.summarize(tmp_path) == [
        ("hellaswag", "acc_norm", 61.23),
        ("truthfulqa_mc", "mc2", 35.0),
        ("mmlu", "acc_norm", 40.0),
    ]


def test_summary_empty(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert lt.main(["summary", "--output-dir", str(tmp_path)]) == 1
    assert "no lm_eval result file" in capsys.readouterr().err


def script(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    unset = ("MODEL_PATH", "API_BASE", "MODEL", "TASKS", "TOKENIZER", "MAX_LENGTH")
    full = {k: v for k, v in os.environ.items() if k not in unset}
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "eval_tasks.sh"), *args],
        env={**full, **env}, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_script_dry_run() -> None:
    done = script(
        {"DRY_RUN": "1", "MODEL_PATH": "/m/camel-7B", "TASKS": "arc_challenge mmlu:1"}, "--seed", "3"
    )
    assert done.returncode == 0, done.stderr
    cmds = [shlex.split(line) for line in done.stdout.splitlines()]
    assert [flag(c, "--tasks") for c in cmds] == ["arc_challenge", "mmlu"]
    assert flag(cmds[1], "--num_fewshot") == "1"
    assert flag(cmds[0], "--output_path") == "eval-results/camel-7B/arc_challenge-25-shots"
    assert cmds[0][-2:] == ["--seed", "3"]
    done = script({"DRY_RUN": "1", "API_BASE": "http://h:8000/v1", "MODEL": "tiny", "OUTPUT_DIR": "/tmp/o"})
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 4 and "local-completions" in done.stdout
    done = script(
        {"DRY_RUN": "1", "API_BASE": "http://h/v1", "MODEL": "m", "TOKENIZER": "/c", "MAX_LENGTH": "64"}
    )
    assert done.returncode == 0 and "tokenized_requests=True,tokenizer=/c,max_length=64" in done.stdout
    assert script({"DRY_RUN": "1"}).returncode == 1


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_script_shellcheck() -> None:
    done = subprocess.run(
        ["shellcheck", str(ROOT / "scripts" / "eval_tasks.sh")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout


def test_result_files_skip_unreadable_json(tmp_path: Path) -> None:
    from camel_chat.evaluation.lm_eval_tasks import result_files

    (tmp_path / "deep.json").write_text("[" * 100_000)  # was a RecursionError (issue 17)
    (tmp_path / "bytes.json").write_bytes(b'{"results": "\xff"}')
    (tmp_path / "ok.json").write_text('{"results": {"arc_challenge": {"acc_norm,none": 0.5}}}')
    assert result_files(tmp_path) == [tmp_path / "ok.json"]
