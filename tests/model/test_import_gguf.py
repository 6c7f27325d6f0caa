"""import_gguf's bad inputs, without real weights: each is one named error and nothing is written.

GGUF files here are written with the `gguf` package's own writer (a header and one tensor), so
the checks run before any model is loaded. The real import (SmolLM2) is tested in
tests/real_weights/test_smollm2.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from camel_chat.errors import CamelChatError
from camel_chat.model.import_gguf import GgufError, check_gguf, import_gguf

gguf = pytest.importorskip("gguf")


def _write_gguf(path: Path, arch: str = "llama") -> Path:
    import numpy as np

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.arange(64 * 16, dtype=np.float32).reshape(64, 16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_header_is_read(tmp_path: Path) -> None:
    info = check_gguf(_write_gguf(tmp_path / "m.gguf"))
    assert info == {"architecture": "llama", "tensors": 1, "types": ["F32"]}


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(GgufError, match="no such file"):
        check_gguf(tmp_path / "absent.gguf")


def test_not_a_gguf(tmp_path: Path) -> None:
    bogus = tmp_path / "model.gguf"
    bogus.write_text('{"not": "gguf"}')
    with pytest.raises(GgufError, match=r"not a GGUF file \(starts with b'\{\"no'"):
        check_gguf(bogus)


def test_truncated(tmp_path: Path) -> None:
    whole = _write_gguf(tmp_path / "m.gguf").read_bytes()
    for cut in (len(whole) - 100, 40):  # inside the tensor data; inside the header
        short = tmp_path / f"short{cut}.gguf"
        short.write_bytes(whole[:cut])
        with pytest.raises(GgufError, match="truncated"):
            check_gguf(short)


def test_unknown_architecture(tmp_path: Path) -> None:
    with pytest.raises(GgufError, match="architecture 'rwkv6' is not readable by transformers"):
        check_gguf(_write_gguf(tmp_path / "m.gguf", arch="rwkv6"))


def test_bad_inputs_leave_nothing_behind(tmp_path: Path) -> None:
    bogus = tmp_path / "bad.gguf"
    bogus.write_bytes(b"GGML" + b"\0" * 64)
    out = tmp_path / "out"
    with pytest.raises(GgufError):
        import_gguf(bogus, out, log=lambda _: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.gguf"]
    with pytest.raises(CamelChatError, match="unknown template"):
        import_gguf(_write_gguf(tmp_path / "m.gguf"), out, template="no-such-template", log=lambda _: None)
    assert not out.exists()


def test_non_empty_target_needs_force(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(CamelChatError, match="is not empty; pass --force"):
        import_gguf(_write_gguf(tmp_path / "m.gguf"), out, log=lambda _: None)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_command_line_prints_one_error_line(tmp_path: Path) -> None:
    bogus = tmp_path / "x.gguf"
    bogus.write_text("hello")
    proc = subprocess.run(
        [sys.executable, "-m", "camel_chat.model.import_gguf", "--gguf", str(bogus), "--output", "o"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    expected = f"error: {bogus}: not a GGUF file (starts with b'hell', expected b'GGUF')"
    assert proc.stderr.strip().splitlines() == [expected]
