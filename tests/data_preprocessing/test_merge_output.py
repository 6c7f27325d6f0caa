"""merge.py's output: streamed piece by piece, yet the same bytes, whichever token counter ran."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from camel_chat.data_preprocessing import merge
from camel_chat.data_preprocessing.jsonfile import write_json, write_json_array
from camel_chat.data_preprocessing.tally import Tally
from camel_chat.templates import SegmentEncoder, get_template
from camel_chat.templates.length import LengthModel

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "datasets"

ITEMS = [
    {"id": "a_0", "conversations": [{"from": "human", "value": 'line\nbreak "q" 你好 🙂'}]},
    {"id": "b_2", "model": "", "extra": {"nested": [1, 2.5, None, {}], "empty": []}, "conversations": []},
    "plain string",
    7,
]


@pytest.mark.parametrize("items", [[], ITEMS[:1], ITEMS])
def test_streamed_array_is_byte_identical_to_one_shot_write(items: list[Any], tmp_path: Path) -> None:
    write_json(tmp_path / "one.json", items)
    assert write_json_array(tmp_path / "streamed.json", iter(items)) == len(items)
    assert (tmp_path / "streamed.json").read_bytes() == (tmp_path / "one.json").read_bytes()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(JSON_VALUES, max_size=5))
def test_streamed_array_matches_json_dumps_on_any_json(items: list[Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        write_json_array(Path(tmp) / "out.json", iter(items))
        assert (Path(tmp) / "out.json").read_text(encoding="utf-8") == json.dumps(items, indent=2)


def test_failed_stream_leaves_no_file(tmp_path: Path) -> None:
    def items() -> Any:
        yield {"id": "x"}
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_json_array(tmp_path / "out.json", items())
    assert list(tmp_path.iterdir()) == []  # neither the target nor the temporary file


def test_merge_with_llama_tokenizer_matches_hf_counts(
    real_tokenizer_dirs: dict[str, Path], tmp_path: Path, capsys: Any
) -> None:
    """The command on the real LLaMA tokenizer (sentencepiece counts, streamed output) writes
    exactly the dataset that the HF tokenizer's own counts and a one-shot write give."""
    pytest.importorskip("sentencepiece")
    from transformers import AutoTokenizer

    from camel_chat.data_preprocessing import convert_datasets_to_conversation_format as convert
    from camel_chat.data_preprocessing import download_datasets

    work = tmp_path / "datasets"
    shutil.copytree(SAMPLES, work)
    download_datasets.run(work, ["all"], fetch=lambda **kw: None)
    assert convert.main(["--download_directory", str(work), "--datasets", "all"]) == 0
    llama = real_tokenizer_dirs["llama-sp"]
    args = ["--in-directory", str(work), "--tokenizer-path", str(llama), "--max-length", "256"]
    assert merge.main(args) == 0
    out = capsys.readouterr().out
    assert "token counts: sentencepiece backend" in out and "disabled" not in out
    records = merge.load_conversations(work)
    hf_model = LengthModel(get_template("vicuna_v1.1"), SegmentEncoder(AutoTokenizer.from_pretrained(llama)))
    tally = Tally("t")
    expected = merge.merge(records, hf_model, 256, 42, tally)
    assert tally.dropped  # the budget is tight enough that some pairs do not fit
    assert len({p["id"] for p in expected}) > len(records)  # and some conversations were split
    assert (work / "dataset.json").read_text() == json.dumps(expected, indent=2)
