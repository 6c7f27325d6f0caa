"""Fuzz the other files camel_chat reads: training data and the training `--config` YAML, the
role-play role/task lists, KAgentBench eval and prediction files, the terminal chat's
`!!load` JSON and templates.toml. Each starts from a real-format sample and must hold the
property of docs/FUZZING.md: a result, or a `CamelChatError` / exit code naming the file.
(import_gguf inputs belong to the GGUF importer's own suite and are not fuzzed here.)
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import re
import tempfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest
from fuzz_mutations import assert_clean_outcome, mutated_bytes, mutated_json
from hypothesis import given
from hypothesis import strategies as st

from camel_chat.errors import CamelChatError

REPO = Path(__file__).resolve().parents[2]
SHAREGPT = REPO / "samples" / "datasets" / "HTML_cleaned_raw_dataset" / "sg_90k_part1.json"
SHAREGPT_JSONL = b"".join(json.dumps(r).encode() + b"\n" for r in json.loads(SHAREGPT.read_bytes()))


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        yield Path(tmp)


def names_file(exc: BaseException, path: Path) -> bool:
    return path.name in str(exc)


# --- training data and --config ------------------------------------------------------------


@given(st.one_of(mutated_json(SHAREGPT.read_bytes()).map(lambda b: (".json", b)),
                 mutated_json(SHAREGPT_JSONL, jsonl=True).map(lambda b: (".jsonl", b))))  # fmt: skip
def test_training_data(tiny_tokenizer: Any, case: tuple[str, bytes]) -> None:
    from camel_chat.train.dataset import load_conversations, tokenized_dataset

    suffix, data = case
    with workdir() as directory:
        path = directory / f"dataset{suffix}"
        path.write_bytes(data)
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                records = load_conversations(path)
                samples, tally = tokenized_dataset(
                    path, records, tiny_tokenizer, "vicuna_v1.1", 128, None, progress=False, verbose=False
                )
        except CamelChatError as exc:
            assert names_file(exc, path), exc
            return
        assert samples and tally.kept == len(samples)


def config_yaml(model: Path, data: Path, out: Path) -> bytes:
    return (
        f"model_name_or_path: {model}\ndata_path: {data}\noutput_dir: {out}\n"
        "num_train_epochs: 1\nper_device_train_batch_size: 2\ngradient_accumulation_steps: 1\n"
        "learning_rate: 2.0e-5\nlr_scheduler_type: cosine\nmodel_max_length: 128\n"
        "report_to: none\nsave_strategy: 'no'\n"
    ).encode()


@st.composite
def yaml_damage(draw: st.DrawFn, data: bytes) -> bytes:
    lines = data.splitlines(keepends=True)
    i = draw(st.integers(0, len(lines) - 1))
    key = lines[i].split(b":")[0]
    value = draw(
        st.sampled_from(
            [b"[1, 2]", b"{a: 1}", b"null", b"-1", b"1e999", b"abc", b"'\\x00'", b"!!binary aGVsbG8=",
             b"[" * 5000, b"&a [*a]", b'"\\ud800"', b"9" * 5000, b"\t x", b"!!python/object:os.system"]
        )
    )  # fmt: skip
    lines[i] = key + b": " + value + b"\n"
    return b"".join(lines)


@pytest.fixture(scope="module")
def train_files(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("train")
    (root / "data.json").write_bytes(SHAREGPT.read_bytes())
    return root / "data.json", root / "out"


@pytest.mark.parametrize("qlora", [False, True])
@given(st.data())
def test_train_config_yaml(
    tiny_llama_dir: Path, train_files: tuple[Path, Path], qlora: bool, data: Any
) -> None:
    from camel_chat.train.args import parse_args, validate

    sample = config_yaml(tiny_llama_dir, *train_files)
    damaged = data.draw(st.one_of(mutated_bytes(sample), yaml_damage(sample)), label="config")
    with workdir() as directory:
        path = directory / "train.yaml"
        path.write_bytes(damaged)
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                validate(parse_args(["--config", str(path)], qlora=qlora))
        except CamelChatError as exc:
            assert str(exc).strip() and "\n" not in str(exc).strip(), exc
        except SystemExit as exc:  # argparse: a usage line and "error: ..." on stderr, exit 2
            assert exc.code == 2 and "error:" in err.getvalue(), err.getvalue()


# --- role-play lists --------------------------------------------------------------------------

ROLES = b"1. Python Programmer\n2. Accountant\n# a comment\n\n3. Chef\n"
TASKS = b"Write a script that sorts a CSV file by its second column.\n"


def roleplay_server(request: httpx.Request) -> httpx.Response:
    reply = "Solution: done. <CAMEL_TASK_DONE>"
    content = json.loads(request.content)["messages"][0]["content"]
    if "task" in content.lower() and "specif" in content.lower():
        reply = "Sort a CSV by column two."
    choice = {"index": 0, "message": {"role": "assistant", "content": reply}}
    return httpx.Response(200, json={"choices": [choice]})


@given(st.sampled_from(["assistant", "user", "tasks"]), st.data())
def test_roleplay_lists(which: str, data: Any) -> None:
    from camel_chat.data_preprocessing import generate_roleplay

    files = {"assistant": ROLES, "user": ROLES, "tasks": TASKS}
    files[which] = data.draw(mutated_bytes(files[which]), label=which)
    with workdir() as directory:
        for name, content in files.items():
            (directory / f"{name}.txt").write_bytes(content)
        argv = ["--model", "tiny", "--api-base", "http://fake/v1", "--out-dir", str(directory / "out")]
        argv += ["--assistant-roles", str(directory / "assistant.txt")]
        argv += ["--user-roles", str(directory / "user.txt")]
        argv += ["--tasks", str(directory / "tasks.txt"), "--limit", "1", "--parallel", "1"]
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = generate_roleplay.main(argv, transport=httpx.MockTransport(roleplay_server))
        assert_clean_outcome(rc, out.getvalue(), err.getvalue(), directory / f"{which}.txt")
        for written in (directory / "out").glob("*.json"):
            json.loads(written.read_text(encoding="utf-8"))


# --- KAgentBench ------------------------------------------------------------------------------


def _tiny_benchmark() -> tuple[list[dict], list[dict]]:
    cases = REPO / "tests" / "evaluation" / "test_kagent_scoring.py"
    spec = importlib.util.spec_from_file_location("kagent_cases", cases)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.tiny_benchmark()


EVALS, PREDS = _tiny_benchmark()


def jsonl(records: list[dict]) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records)


@given(st.sampled_from(["eval", "pred"]), st.data())
def test_kagentbench_score(which: str, data: Any) -> None:
    from camel_chat.evaluation import kagentbench

    files = {"eval": jsonl(EVALS), "pred": jsonl(PREDS)}
    files[which] = data.draw(mutated_json(files[which], jsonl=True), label=which)
    with workdir() as directory:
        for name, content in files.items():
            (directory / f"{name}.jsonl").write_bytes(content)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = kagentbench.main(["score", str(directory / "eval.jsonl"), str(directory / "pred.jsonl")])
        assert_clean_outcome(rc, out.getvalue(), err.getvalue(), directory / f"{which}.jsonl")


# --- the terminal chat's !!load ----------------------------------------------------------------

SAVED_CHAT = json.dumps(
    {
        "template": "vicuna_v1.1",
        "system": "A chat.",
        "messages": [
            {"role": "user", "content": "Hello, who are you?"},
            {"role": "assistant", "content": "An assistant. ¿Qué tal? 😀"},
        ],
    },
    indent=2,
    ensure_ascii=False,
).encode()


class RecordingIO:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, text: str) -> None:
        self.lines.append(text)

    def print_message(self, role: str, text: str) -> None:
        self.lines.append(f"{role}: {text}")


@given(mutated_json(SAVED_CHAT))
def test_chat_load(data: bytes) -> None:
    from camel_chat.serve import cli

    with workdir() as directory:
        path = directory / "chat.json"
        path.write_bytes(data)
        conv = cli.Conversation(template="vicuna_v1.1")
        chatio = RecordingIO()
        assert cli._command(f"!!load {path}", conv, chatio) == ""  # type: ignore[arg-type]
        if any(line.startswith("cannot load") for line in chatio.lines):
            assert conv.messages == [], "a failed load must leave the conversation as it was"
            assert any(str(path) in line for line in chatio.lines)
        else:
            assert all(m["role"] in ("user", "assistant", "system") for m in conv.messages)


# --- templates.toml ------------------------------------------------------------------------------

TEMPLATES = resources.files("camel_chat.templates").joinpath("templates.toml").read_bytes()
_STRING_VALUE = re.compile(rb'= "[^"\n]*"')


@st.composite
def toml_wrong_type(draw: st.DrawFn, data: bytes) -> bytes:
    spots = [m.span() for m in _STRING_VALUE.finditer(data)]
    start, end = draw(st.sampled_from(spots))
    value = draw(st.sampled_from([b"= 1", b"= []", b"= {}", b"= true", b'= ""', b"= " + b"[" * 3000]))
    return data[:start] + value + data[end:]


@given(st.one_of(mutated_bytes(TEMPLATES), toml_wrong_type(TEMPLATES)))
def test_templates_toml(data: bytes) -> None:
    from camel_chat.json_input import read_text
    from camel_chat.templates.template import parse_catalogue

    with workdir() as directory:
        path = directory / "templates.toml"
        path.write_bytes(data)
        try:
            parse_catalogue(read_text(path), str(path))
        except CamelChatError as exc:
            assert names_file(exc, path), exc
