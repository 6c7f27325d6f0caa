"""Fuzz the data pipeline's inputs: damaged copies of the bundled samples through the real
commands (in-process `main(argv)`), checked against `assert_clean_outcome`.

Surfaces: ShareGPT parts, KAgentInstruct JSON, CAMEL chat and science JSON files, the
tar.gz / zip archives (through download_datasets' extraction), the Alpaca parquet, and
merge.py's *_conv.json inputs.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from fuzz_mutations import assert_clean_outcome, mutated_bytes, mutated_json
from hypothesis import given
from hypothesis import strategies as st

from camel_chat.data_preprocessing import convert_datasets_to_conversation_format as convert
from camel_chat.data_preprocessing import download_datasets, merge
from camel_chat.data_preprocessing.archives import extract_archive

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "datasets"
SHAREGPT = SAMPLES / "HTML_cleaned_raw_dataset" / "sg_90k_part1.json"
KAGENT = SAMPLES / "kwaiagent_train_data.json"
ALPACA = next((SAMPLES / "data").glob("*.parquet"))


def run_main(main: Callable[[Sequence[str]], int], argv: Sequence[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse's own exit: one usage line, code 2
            rc = int(exc.code or 0)
    return rc, out.getvalue(), err.getvalue()


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        yield Path(tmp)


def convert_one(directory: Path, name: str) -> tuple[int, str, str]:
    return run_main(convert.main, ["--download_directory", str(directory), "--datasets", name])


@given(mutated_json(SHAREGPT.read_bytes()))
def test_sharegpt_part(data: bytes) -> None:
    with workdir() as directory:
        folder = directory / "HTML_cleaned_raw_dataset"
        folder.mkdir()
        (folder / "sg_90k_part1.json").write_bytes(data)
        shutil.copy(SAMPLES / "HTML_cleaned_raw_dataset" / "sg_90k_part2.json", folder)
        rc, out, err = convert_one(directory, "sharegpt")
        assert_clean_outcome(rc, out, err, folder / "sg_90k_part1.json", [directory / "sharegpt_conv.json"])


@given(mutated_json(KAGENT.read_bytes()))
def test_kagent_json(data: bytes) -> None:
    with workdir() as directory:
        (directory / KAGENT.name).write_bytes(data)
        rc, out, err = convert_one(directory, "kagent")
        assert_clean_outcome(rc, out, err, directory / KAGENT.name, [directory / "kagent_conv.json"])


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The bundled CAMEL archives, extracted once: {dataset: folder}."""
    root = tmp_path_factory.mktemp("camel")
    return {
        name: extract_archive(SAMPLES / archive, root, remove=False)
        for name, archive in (("ai_society", "ai_society_chat.tar.gz"), ("math", "math.zip"))
    }


@pytest.mark.parametrize("dataset", ["ai_society", "math"])
@given(st.data())
def test_camel_json_file(extracted: dict[str, Path], dataset: str, data: st.DataObject) -> None:
    source = extracted[dataset]
    files = sorted(source.glob("*.json"))
    victim = data.draw(st.sampled_from(files), label="file")
    damaged = data.draw(mutated_json(victim.read_bytes()), label="content")
    with workdir() as directory:
        folder = shutil.copytree(source, directory / source.name)
        (folder / victim.name).write_bytes(damaged)
        rc, out, err = convert_one(directory, dataset)
        assert_clean_outcome(rc, out, err, folder / victim.name, [directory / f"{dataset}_conv.json"])


def no_network(**kwargs: Any) -> None:
    raise AssertionError(f"tried to download {kwargs}")


@pytest.mark.parametrize("archive", ["ai_society_chat.tar.gz", "code_chat.tar.gz", "physics.zip"])
@given(st.data())
def test_archive(archive: str, data: st.DataObject) -> None:
    damaged = data.draw(mutated_bytes((SAMPLES / archive).read_bytes()), label="archive")
    name = {"ai_society_chat.tar.gz": "ai_society", "code_chat.tar.gz": "code", "physics.zip": "physics"}[
        archive
    ]
    with workdir() as directory:
        (directory / archive).write_bytes(damaged)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            report = download_datasets.run(directory, [name], fetch=no_network)
        summary = report.summary()
        assert "Traceback" not in summary + err.getvalue()
        if not report.ok:
            assert archive in summary, summary  # the failure names the archive
            assert not any(p.name.endswith(".extracting") for p in directory.iterdir())
            return
        rc, out_text, err_text = convert_one(directory, name)
        assert_clean_outcome(rc, out_text, err_text, directory / name, [directory / f"{name}_conv.json"])


@st.composite
def alpaca_frames(draw: st.DrawFn) -> bytes:
    """A parquet file with the Alpaca columns, some cells of the wrong type or missing."""
    import pandas as pd

    frame = pd.read_parquet(ALPACA)
    column = draw(st.sampled_from(list(frame.columns)))
    kind = draw(st.sampled_from(["wrong-type", "drop-column", "extra-column", "huge", "nul", "empty"]))
    if kind == "drop-column":
        frame = frame.drop(columns=[column])
    elif kind == "extra-column":
        frame["unexpected"] = 1
    elif kind == "empty":
        frame = frame.iloc[0:0]
    else:
        row = draw(st.integers(0, len(frame) - 1))
        value: Any = {"huge": "x" * 1_000_000, "nul": "a\x00b"}.get(kind)
        if kind == "wrong-type":
            value = draw(st.sampled_from([None, 1, 1.5, "", " ", "\ufeff"]))
        frame = frame.astype(object)
        frame.at[frame.index[row], column] = value
    buffer = io.BytesIO()
    try:
        frame.to_parquet(buffer)
    except Exception:  # pyarrow cannot store this mix in one column: store it as text instead
        frame.astype(str).to_parquet(buffer)
    return buffer.getvalue()


@given(st.one_of(mutated_bytes(ALPACA.read_bytes()), alpaca_frames()))
def test_alpaca_parquet(data: bytes) -> None:
    with workdir() as directory:
        (directory / "data").mkdir()
        (directory / "data" / ALPACA.name).write_bytes(data)
        rc, out, err = convert_one(directory, "alpaca")
        assert_clean_outcome(rc, out, err, directory / "data" / ALPACA.name, [directory / "alpaca_conv.json"])


@given(mutated_json(SHAREGPT.read_bytes()))
def test_merge_input(tiny_llama_dir: Path, data: bytes) -> None:
    with workdir() as directory:
        (directory / "a_conv.json").write_bytes(data)
        shutil.copy(SAMPLES / "HTML_cleaned_raw_dataset" / "sg_90k_part2.json", directory / "b_conv.json")
        argv = [
            "--in-directory",
            str(directory),
            "--tokenizer-path",
            str(tiny_llama_dir),
            "--max-length",
            "256",
        ]
        rc, out, err = run_main(merge.main, argv)
        assert_clean_outcome(rc, out, err, directory / "a_conv.json", [directory / "dataset.json"])
