"""`python -m camel_chat.model.import_gguf` on damaged GGUF files (docs/FUZZING.md).

The sample is a tiny GGUF that really imports (tests/tiny_gguf.py: a 2-layer LLaMA with a
byte-level BPE tokenizer). Each case damages it the way files are damaged, or lies in its
header: byte flips in the header and metadata, truncation at every field boundary and
anywhere, a wrong magic, huge declared counts, lengths and dimensions (2**31 .. 2**64-1), an
unknown ggml type, another architecture, a tensor left out. The property, on every case:

- exit 0 with a checkpoint (damaged bytes that still describe a model, e.g. a flipped weight),
  or exit 2 with exactly ONE `error:` line that names the file; never an exception;
- nothing left behind on failure: no --out folder, no staging `.tmp` folder;
- bounded: each case runs in seconds (a declared count of 2**63 is never allocated).
"""

from __future__ import annotations

import contextlib
import io
import resource
import struct
import subprocess
import sys
import time
from functools import cache
from pathlib import Path

import pytest
from hypothesis import event, given
from hypothesis import strategies as st
from tiny_gguf import write_tiny_gguf

from camel_chat.model.import_gguf import main

gguf = pytest.importorskip("gguf")

HUGE = [2**31, 2**32 - 1, 2**32, 2**40, 2**62, 2**63 - 1, 2**64 - 1]
OTHER_ARCHES = ["qwen2", "mistral", "gemma", "phi3", "gpt2", "rwkv6", "bert", ""]
SECONDS_PER_CASE = 60  # the slowest real path (a full import) takes about a second


@cache
def sample(tmp: str) -> tuple[bytes, int, tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(bytes, where tensor data starts, offsets of every field/tensor-info part, of every u64
    count, of every u32 `llama.*` value)."""
    path = write_tiny_gguf(Path(tmp) / "sample.gguf")
    reader = gguf.GGUFReader(str(path))
    parts, counts, hparams = [], [], []
    fields = [*reader.fields.values(), *(t.field for t in reader.tensors)]
    for field in fields:
        offset = field.offset
        for part in field.parts:
            parts.append(offset)
            if part.dtype.itemsize == 8 and part.dtype.kind == "u" and part.size == 1:
                counts.append(offset)  # a key/string length, an array count, a dimension, a data offset
            offset += part.nbytes
        if field.name.startswith("llama.") and field.parts[-1].dtype == "uint32":
            hparams.append(offset - 4)
    data_start = min(t.data_offset for t in reader.tensors)
    return path.read_bytes(), data_start, tuple(sorted(set(parts))), tuple(counts), tuple(hparams)


@st.composite
def damaged_gguf(draw: st.DrawFn, tmp: str) -> bytes:
    data, data_start, boundaries, counts, hparams = sample(tmp)
    kind = draw(
        st.sampled_from(
            [
                *("header-flips", "data-flips", "truncate-boundary", "truncate-anywhere", "magic"),
                *("huge-count", "hparam", "bad-type", "version"),
            ]
        ),
        label="kind",
    )
    out = bytearray(data)
    if kind == "header-flips":
        for _ in range(draw(st.integers(1, 8))):
            out[draw(st.integers(0, data_start - 1))] ^= draw(st.integers(1, 255))
    elif kind == "data-flips":
        for _ in range(draw(st.integers(1, 8))):
            out[draw(st.integers(data_start, len(out) - 1))] ^= draw(st.integers(1, 255))
    elif kind == "truncate-boundary":
        return data[: draw(st.sampled_from(boundaries)) + draw(st.integers(-1, 1))]
    elif kind == "truncate-anywhere":
        return data[: draw(st.integers(0, len(data) - 1))]
    elif kind == "magic":
        return draw(st.sampled_from([b"GGML", b"ggufx", b"\0\0\0\0", b"FUGG", b"GGU"])) + data[4:]
    elif kind == "huge-count":
        # the header's tensor or key/value count (offsets 8, 16), or any length/count/dimension
        at = draw(st.sampled_from([8, 16, *counts]))
        out[at : at + 8] = struct.pack("<Q", draw(st.sampled_from(HUGE)))
    elif kind == "hparam":
        # a hyper-parameter (u32) of the header set to 0, odd, or huge: layers, sizes, heads
        key = draw(st.sampled_from(hparams))
        out[key : key + 4] = struct.pack("<I", draw(st.sampled_from([0, 1, 3, 7, 4096, 2**31, 2**32 - 1])))
    elif kind == "bad-type":
        # a metadata value type or ggml tensor type nobody defined (each is a u32 after a name)
        at = draw(st.sampled_from(boundaries))
        out[at : at + 4] = struct.pack("<I", draw(st.sampled_from([13, 39, 99, 2**31, 2**32 - 1])))
    else:
        out[4:8] = struct.pack("<I", draw(st.sampled_from([0, 1, 4, 2**32 - 1])))
    return bytes(out)


def import_cli(path: Path, out: Path) -> tuple[int, str]:
    """Run the command's main() in-process; (exit code, stderr). Any exception fails the test."""
    stderr, stdout = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
        rc = main([str(path), "--out", str(out)])
    return rc, stderr.getvalue()


def assert_clean_import(rc: int, err: str, path: Path, out: Path) -> None:
    assert "Traceback" not in err, err
    if rc == 0:
        assert (out / "model.safetensors").is_file() and (out / "camel_chat.json").is_file()
        return
    assert rc == 2, (rc, err)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert str(path) in errors[0], errors[0]
    left = sorted(p.name for p in path.parent.iterdir())
    assert left == [path.name], left  # no --out, no staging folder


def run_case(folder: Path, data: bytes) -> None:
    for old in folder.iterdir():
        if old.is_dir():
            import shutil

            shutil.rmtree(old)
        else:
            old.unlink()
    path = folder / "model.gguf"
    path.write_bytes(data)
    start = time.monotonic()
    rc, err = import_cli(path, folder / "out")
    assert time.monotonic() - start < SECONDS_PER_CASE
    assert_clean_import(rc, err, path, folder / "out")
    reason = next((line for line in err.splitlines() if line.startswith("error:")), "error: imported")
    event(reason.split(": ", 2)[-1].split("(")[0][:40])  # for --hypothesis-show-statistics


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    return str(tmp_path_factory.mktemp("gguf-sample")), tmp_path_factory.mktemp("gguf-case")


def test_the_tiny_sample_really_imports(folders: tuple[str, Path], tmp_path: Path) -> None:
    data = sample(folders[0])[0]
    (tmp_path / "model.gguf").write_bytes(data)
    rc, err = import_cli(tmp_path / "model.gguf", tmp_path / "out")
    assert rc == 0, err
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out")
    ids = tokenizer("hello world")["input_ids"]
    assert tokenizer.decode(ids) == "hello world"
    assert tokenizer.convert_ids_to_tokens(ids)[0] == "hell"  # the sample's merges are used


@given(st.data())
def test_damaged_gguf(folders: tuple[str, Path], data: st.DataObject) -> None:
    run_case(folders[1], data.draw(damaged_gguf(folders[0]), label="gguf"))


@pytest.mark.parametrize("arch", OTHER_ARCHES)
def test_other_architecture(arch: str, tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "model.gguf", arch=arch)
    rc, err = import_cli(path, tmp_path / "out")
    assert_clean_import(rc, err, path, tmp_path / "out")
    assert rc == 2


@given(
    st.sampled_from(
        ["token_embd.weight", "output_norm.weight", "blk.0.attn_q.weight", "blk.1.ffn_down.weight"]
    )
)
def test_missing_tensor(folders: tuple[str, Path], name: str) -> None:
    folder = folders[1]
    run_case(folder, write_tiny_gguf(Path(folders[0]) / "dropped.gguf", drop=(name,)).read_bytes())
    assert not (folder / "out").exists()


# --- through the real entry point, as a shell sees it -------------------------------------------


def _cli(path: Path, out: Path) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "camel_chat.model.import_gguf", str(path), "--out", str(out)]
    return subprocess.run(args, capture_output=True, text=True, timeout=300)


def _set_u32(path: Path, key: str, value: int) -> None:
    field = gguf.GGUFReader(str(path)).fields[key]
    at = field.offset + sum(part.nbytes for part in field.parts[:-1])
    data = bytearray(path.read_bytes())
    data[at : at + 4] = struct.pack("<I", value)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("block_count", "llama.block_count is 2147483648 but the tensors hold 2 layers (blk.N)"),
        ("drop", "tensors missing for llama: model.layers.1.mlp.down_proj.weight"),
        ("truncate", "truncated or damaged GGUF"),
    ],
)
def test_command_line(damage: str, reason: str, tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "m.gguf", drop=("blk.1.ffn_down.weight",) if damage == "drop" else ())
    if damage == "block_count":  # before the fix: builds 2**31 layers until memory runs out
        _set_u32(path, "llama.block_count", 2**31)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:1000])  # inside the vocabulary
    proc = _cli(path, tmp_path / "out")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {path}: {reason}"), proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf"]  # no --out, no staging folder
    # the largest child this test process has waited for: bounded, whatever the header declared
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss < 3 * 1024 * 1024  # KiB
