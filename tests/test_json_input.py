"""camel_chat.json_input: encodings, depth, surrogates, size and streaming, one case per rule,
plus the two crashes of issue 17 through the real commands (subprocess: exit code, no traceback)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from camel_chat.errors import DataError
from camel_chat.json_input import iter_json_array, read_json, read_jsonl, read_text
from camel_chat.json_scan import depth_of

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples" / "datasets"
SHAREGPT_PART = SAMPLES / "HTML_cleaned_raw_dataset" / "sg_90k_part1.json"


def stream(path: Path, data: bytes, chunk_size: int = 1 << 20) -> tuple[list[Any], list[tuple[str, str]]]:
    path.write_bytes(data)
    drops: list[tuple[str, str]] = []
    out = list(iter_json_array(path, drop=lambda r, w: drops.append((r, w)), chunk_size=chunk_size))
    return out, drops


def rule_of(call: Any) -> str | None:
    with pytest.raises(DataError) as info:
        call()
    return info.value.rule


@pytest.mark.parametrize(
    "data",
    [
        b'[1, "\xc3\xa9", {"a": [2]}]',  # UTF-8
        b'\xef\xbb\xbf[1, "\xc3\xa9", {"a": [2]}]',  # UTF-8 with BOM
        '[1, "é", {"a": [2]}]'.encode("utf-16"),  # UTF-16 with BOM
        '[1, "é", {"a": [2]}]'.encode("utf-16-be"),  # UTF-16 without BOM (RFC 4627 NUL pattern)
        '[1, "é", {"a": [2]}]'.encode("utf-32"),
    ],
)
def test_encodings_are_decoded(tmp_path: Path, data: bytes) -> None:
    assert stream(tmp_path / "x.json", data) == ([1, "é", {"a": [2]}], [])
    assert read_json(tmp_path / "x.json") == [1, "é", {"a": [2]}]


def test_invalid_utf8_is_a_counted_drop_in_an_array_and_a_named_error_in_a_document(tmp_path: Path) -> None:
    out, drops = stream(tmp_path / "x.json", b'[1, "a\xff\xfeb", 2, {"k": "\xc0"}, 3]')
    assert out == [1, 2, 3]
    assert [rule for rule, _ in drops] == ["invalid-utf8", "invalid-utf8"]
    assert "[record 1]" in drops[0][1] and "0xff" in drops[0][1]
    (tmp_path / "doc.json").write_bytes(b'{"a": "x\xff"}')
    with pytest.raises(DataError, match=r"byte 0xff at offset 8") as info:
        read_json(tmp_path / "doc.json")
    assert info.value.rule == "invalid-utf8"
    # without a drop callback the array reader names the record instead of skipping it
    with pytest.raises(DataError, match=r"\[record 1\]: byte 0xff is not UTF-8"):
        list(iter_json_array(tmp_path / "x.json"))


def test_lone_surrogates_are_rejected_but_escaped_pairs_are_kept(tmp_path: Path) -> None:
    out, drops = stream(tmp_path / "x.json", b'["\\ud83d\\ude00", "\\ud800", {"v": "x\\udfff"}]')
    assert out == ["\U0001f600"]
    assert [rule for rule, _ in drops] == ["lone-surrogate", "lone-surrogate"]
    (tmp_path / "doc.json").write_text('{"a": [{"value": "\\udc00"}]}')
    with pytest.raises(DataError, match=r"at \.a\[0\]\.value"):
        read_json(tmp_path / "doc.json")


def test_deep_nesting_is_rejected_without_recursion(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)  # the file: unterminated
    assert rule_of(lambda: list(iter_json_array(deep))) == "too-deep"
    assert rule_of(lambda: read_json(deep)) == "too-deep"
    balanced = b"[" + b"[" * 5000 + b"]" * 5000 + b', {"a": 1}]'
    assert stream(tmp_path / "b.json", balanced)[0] == [{"a": 1}]  # the deep record is dropped
    just_over = b"[" + b"[" * 101 + b"]" * 101 + b"]"  # within the parser's limit, over ours
    assert stream(tmp_path / "c.json", just_over)[1][0][0] == "too-deep"
    assert stream(tmp_path / "d.json", b"[" + b"[" * 100 + b"]" * 100 + b"]")[1] == []
    (tmp_path / "e.jsonl").write_text("[" * 5000 + "\n" + '{"a": 1}\n')
    drops: list[tuple[str, str]] = []
    assert list(read_jsonl(tmp_path / "e.jsonl", drop=lambda r, w: drops.append((r, w)))) == [(2, {"a": 1})]
    assert drops[0][0] == "too-deep" and "line 1" in drops[0][1]


def test_depth_of_counts_without_being_fooled_by_strings() -> None:
    text = json.dumps({"a": [[{"b": "[[[[[[[[[[{{{{{{{"}]]})
    assert depth_of(text, 0, len(text), 10) == 4  # 21 brackets, but the ones in the string do not count
    assert depth_of(text, 0, len(text), 2) == 3  # over the limit: counting stops at limit + 1


@pytest.mark.parametrize(
    ("data", "rule"),
    [
        (b"", "not-an-array"),
        (b'{"a": 1}', "not-an-array"),
        (b'[1, {"a": 2}', "truncated"),
        (b'[1, "abc', "truncated"),
        (b"[1 2]", "malformed-json"),
        (b"[1,]", "malformed-json"),
    ],
)
def test_a_broken_array_is_a_named_error(tmp_path: Path, data: bytes, rule: str) -> None:
    (tmp_path / "x.json").write_bytes(data)
    assert rule_of(lambda: list(iter_json_array(tmp_path / "x.json", drop=lambda r, w: None))) == rule


def test_bad_records_inside_a_sound_array_are_dropped_by_rule(tmp_path: Path) -> None:
    data = b'[1, {"a": 1,}, NaN, ' + b"9" * 5000 + b', "a\x00b", 2]'
    out, drops = stream(tmp_path / "x.json", data)
    assert out == [1, 2]
    assert [rule for rule, _ in drops] == ["malformed-json"] * 4


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 64])
def test_streaming_matches_the_stdlib_at_any_chunk_boundary(tmp_path: Path, chunk_size: int) -> None:
    records = [*json.loads(SHAREGPT_PART.read_text(encoding="utf-8")), 12345678, -1.5e10, "é\U0001f600", True]
    data = json.dumps(records, ensure_ascii=False).encode("utf-8")
    assert stream(tmp_path / "x.json", data, chunk_size=chunk_size) == (records, [])


def test_jsonl_lines_are_checked_one_by_one(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\n\n{"b": \n"\xff"\n["\\ud800"]\n{"c": 3}\n')
    drops: list[tuple[str, str]] = []
    got = list(read_jsonl(path, drop=lambda r, w: drops.append((r, w))))
    assert got == [(1, {"a": 1}), (6, {"c": 3})]
    assert [r for r, _ in drops] == ["malformed-json", "invalid-utf8", "lone-surrogate"]
    with pytest.raises(DataError, match=r"\[record line 3\]"):
        list(read_jsonl(path))


def test_read_text_names_the_file(tmp_path: Path) -> None:
    assert rule_of(lambda: read_text(tmp_path / "missing.txt")) == "not-found"
    assert rule_of(lambda: read_text(tmp_path)) == "not-a-file"
    (tmp_path / "big.txt").write_bytes(b"x" * 101)
    assert rule_of(lambda: read_text(tmp_path / "big.txt", limit=100)) == "record-too-large"


# --- the two crashes, through the real commands ---------------------------------------


def run_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO, timeout=120)


def assert_no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr


@pytest.fixture
def sharegpt_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "datasets" / "HTML_cleaned_raw_dataset"
    folder.mkdir(parents=True)
    for part in ("sg_90k_part1.json", "sg_90k_part2.json"):
        shutil.copy(SAMPLES / "HTML_cleaned_raw_dataset" / part, folder / part)
    return folder


def with_stray_bytes(path: Path) -> None:
    data = path.read_bytes()
    at = data.index(b'"value": "') + len(b'"value": "')
    path.write_bytes(data[:at] + b"\xff\xfe" + data[at:])


CONVERT = "camel_chat.data_preprocessing.convert_datasets_to_conversation_format"


def test_convert_sharegpt_drops_the_record_with_stray_bytes(sharegpt_dir: Path) -> None:
    with_stray_bytes(sharegpt_dir / "sg_90k_part1.json")
    proc = run_command("-m", CONVERT, "--download_directory", str(sharegpt_dir.parent), "--datasets=sharegpt")
    assert_no_traceback(proc)
    assert proc.returncode == 0
    assert "invalid-utf8  (e.g. sg_90k_part1.json [record 0]: byte 0xff is not UTF-8)" in proc.stdout
    assert json.loads((sharegpt_dir.parent / "sharegpt_conv.json").read_text())  # written, whole


def test_convert_sharegpt_refuses_deep_nesting_and_writes_nothing(sharegpt_dir: Path) -> None:
    (sharegpt_dir / "sg_90k_part2.json").write_text("[" * 100_000)
    proc = run_command("-m", CONVERT, "--download_directory", str(sharegpt_dir.parent), "--datasets=sharegpt")
    assert_no_traceback(proc)
    assert proc.returncode == 1
    assert "sg_90k_part2.json [record 0]: nesting deeper than 100 levels" in proc.stdout
    assert not list(sharegpt_dir.parent.glob("*_conv.json*")) and not list(sharegpt_dir.parent.glob(".*tmp"))


def test_merge_drops_stray_bytes_and_refuses_deep_nesting(tmp_path: Path, tiny_llama_dir: Path) -> None:
    work = tmp_path / "merge"
    work.mkdir()
    shutil.copy(SHAREGPT_PART, work / "a_conv.json")
    with_stray_bytes(work / "a_conv.json")
    args = [
        "merge.py",
        "--in-directory",
        str(work),
        "--tokenizer-path",
        str(tiny_llama_dir),
        "--max-length=512",
    ]
    proc = run_command(*args)
    assert_no_traceback(proc)
    assert proc.returncode == 0 and "invalid-utf8" in proc.stdout
    (work / "dataset.json").unlink()
    (work / "b_conv.json").write_text("[" * 100_000)
    proc = run_command(*args)
    assert_no_traceback(proc)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {work / 'b_conv.json'} [record 0]: nesting deeper than 100 levels"
    ]
    assert sorted(p.name for p in work.iterdir()) == ["a_conv.json", "b_conv.json"]


def test_one_huge_record_never_sits_in_memory_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import camel_chat.json_input as json_input

    monkeypatch.setattr(json_input, "MAX_RECORD_BYTES", 1 << 20)
    huge = b'"' + b"x" * (3 << 20) + b'"'
    (tmp_path / "x.json").write_bytes(b"[1, " + huge + b", 2]")
    assert (
        rule_of(lambda: list(iter_json_array(tmp_path / "x.json", chunk_size=1 << 16))) == "record-too-large"
    )
    (tmp_path / "x.jsonl").write_bytes(b"1\n" + huge + b"\n2\n")
    drops: list[tuple[str, str]] = []
    got = list(read_jsonl(tmp_path / "x.jsonl", drop=lambda r, w: drops.append((r, w))))
    assert got == [(1, 1), (3, 2)] and drops[0][0] == "record-too-large"
    assert rule_of(lambda: read_json(tmp_path / "x.jsonl")) == "record-too-large"
