"""The three seed commands end to end on the bundled sample files, offline, and what they
do with bad input (clear error naming file/record, non-zero exit, nothing half-written)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from camel_chat.conversation import from_sharegpt
from camel_chat.data_preprocessing import convert_datasets_to_conversation_format as convert
from camel_chat.data_preprocessing import download_datasets, merge
from camel_chat.data_preprocessing.sources import NAMES
from camel_chat.templates import SegmentEncoder, get_template, render

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "datasets"


def no_network(**kwargs: Any) -> None:
    raise AssertionError(f"tried to download {kwargs}")


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pipeline") / "datasets"
    shutil.copytree(SAMPLES, directory)
    report = download_datasets.run(directory, ["all"], fetch=no_network)
    assert report.ok, report.summary()
    assert convert.main(["--download_directory", str(directory), "--datasets", "all"]) == 0
    return directory


def load(path: Path) -> Any:
    return json.loads(path.read_text())


def test_every_source_is_converted(converted: Path) -> None:
    counts = {name: len(load(converted / f"{name}_conv.json")) for name in NAMES}
    assert counts == {
        "ai_society": 6,
        "code": 3,
        "math": 3,
        "physics": 3,
        "chemistry": 3,
        "biology": 3,
        "sharegpt": 5,  # 11 shares: 4 dropped by cleaning, French and Chinese by language
        "alpaca": 8,
        "kagent": 6,  # one conversation per agent step
    }
    assert not list(converted.glob("*.tar.gz")) and not list(converted.glob("*.zip"))


def test_converted_text_is_clean(converted: Path) -> None:
    camel_turns = [t["value"] for r in load(converted / "ai_society_conv.json") for t in r["conversations"]]
    for marker in ("Instruction: ", "Input: None", "Next request.", "<CAMEL_TASK_DONE>"):
        assert not any(marker in turn for turn in camel_turns), marker
    shared = [t["value"] for r in load(converted / "sharegpt_conv.json") for t in r["conversations"]]
    assert not any("<div" in turn or "Copy code" in turn for turn in shared)
    assert any("```" in turn for turn in shared)  # code blocks survive as Markdown fences
    ids = [r["id"] for r in load(converted / "math_conv.json")]
    assert all(i.startswith("math/") for i in ids)
    sources = {r["source"] for r in load(converted / "kagent_conv.json")}
    assert sources == {"kwai-agent", "meta-agent", "react", "profile"}


def test_convert_is_deterministic(converted: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    shutil.copytree(SAMPLES, again)
    download_datasets.run(again, ["all"], fetch=no_network)
    assert convert.main(["--download_directory", str(again), "--datasets", "all"]) == 0
    for name in NAMES:
        assert (again / f"{name}_conv.json").read_bytes() == (converted / f"{name}_conv.json").read_bytes()


def test_merge_fits_budget_and_loses_no_pair(converted: Path, tiny_llama_dir: Path, tmp_path: Path) -> None:
    work = tmp_path / "merge"
    work.mkdir()
    for conv in converted.glob("*_conv.json"):
        shutil.copy(conv, work)
    args = ["--in-directory", str(work), "--tokenizer-path", str(tiny_llama_dir), "--max-length", "1536"]
    assert merge.main(args) == 0
    pieces = load(work / "dataset.json")
    from transformers import AutoTokenizer

    encoder = SegmentEncoder(AutoTokenizer.from_pretrained(tiny_llama_dir))
    template = get_template("vicuna_v1.1")
    for piece in pieces:
        segments = render(template, from_sharegpt(piece), special=encoder.special)
        assert len(encoder.encode(segments).input_ids) <= 1536, piece["id"]
    # every complete pair of the inputs is in exactly one piece
    pairs_in = sum(len(r["conversations"]) // 2 for f in work.glob("*_conv.json") for r in load(f))
    assert sum(len(p["conversations"]) // 2 for p in pieces) == pairs_in
    long_pieces = sorted(p["id"] for p in pieces if p["id"].startswith("ai_society/006_019_005_"))
    assert len(long_pieces) > 1  # the long sample conversation was split
    first_bytes = (work / "dataset.json").read_bytes()
    assert merge.main(args) == 0
    assert (work / "dataset.json").read_bytes() == first_bytes


def test_merge_missing_tokenizer_is_a_clear_error(converted: Path, tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "out.json"
    code = merge.main(
        ["--in-directory", str(converted), "--out-file", str(out), "--tokenizer-path", str(tmp_path / "nope")]
    )
    assert code == 2
    assert "--tokenizer-path" in capsys.readouterr().err
    assert not out.exists()


def test_merge_malformed_conv_file_names_it(tmp_path: Path, tiny_llama_dir: Path, capsys: Any) -> None:
    (tmp_path / "bad_conv.json").write_text('[{"id": "a", "conversations": []}, {oops')
    code = merge.main(["--in-directory", str(tmp_path), "--tokenizer-path", str(tiny_llama_dir)])
    assert code == 2
    err = capsys.readouterr().err
    assert "bad_conv.json" in err and "record 1" in err
    assert not (tmp_path / "dataset.json").exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "bad_conv.json"]  # no temp file left


def test_convert_bad_inputs_are_counted_or_reported(tmp_path: Path, capsys: Any) -> None:
    folder = tmp_path / "math"
    folder.mkdir()
    (folder / "ok.json").write_text(json.dumps({"message_1": "1+1?", "message_2": "2"}))
    (folder / "broken.json").write_text("{not json")
    (folder / "empty.json").write_text(json.dumps({"message_1": "q", "message_2": "   "}))
    parts = tmp_path / "HTML_cleaned_raw_dataset"
    parts.mkdir()
    (parts / "sg_90k_part1.json").write_text("[]")
    (parts / "sg_90k_part2.json").write_text('[{"id": "x"')  # truncated
    code = convert.main(["--download_directory", str(tmp_path), "--datasets", "math", "sharegpt"])
    out = capsys.readouterr().out
    assert code == 1
    assert "malformed-json" in out and "broken.json" in out
    assert "empty-value" in out and "empty.json" in out
    assert "sharegpt: FAILED" in out and "sg_90k_part2.json" in out
    assert [r["id"] for r in load(tmp_path / "math_conv.json")] == ["math/ok"]
    assert not (tmp_path / "sharegpt_conv.json").exists()


def test_kagent_sources_filter_counts_what_it_leaves_out(
    converted: Path, tmp_path: Path, capsys: Any
) -> None:
    shutil.copy(converted / "kwaiagent_train_data.json", tmp_path)
    args = [
        "--download_directory",
        str(tmp_path),
        "--datasets",
        "kagent",
        "--kagent-sources",
        "react",
        "profile",
    ]
    assert convert.main(args) == 0
    assert {r["source"] for r in load(tmp_path / "kagent_conv.json")} == {"react", "profile"}
    assert "source-not-selected" in capsys.readouterr().out


def test_written_files_get_the_usual_mode(tmp_path: Path) -> None:
    import os

    from camel_chat.data_preprocessing.jsonfile import write_json

    write_json(tmp_path / "x.json", [1])
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o666 & ~umask
