"""Safety on the way in (issue 17): bounded extraction (zip bombs, member counts, disk space),
symlinks not followed out of the download folder, zip links written as plain files, and a
source-wide check that checkpoints are never unpickled and remote code never runs unasked."""

from __future__ import annotations

import re
import shutil
import struct
import tarfile
import zipfile
from collections import namedtuple
from pathlib import Path

import pytest

from camel_chat.data_preprocessing import archives
from camel_chat.data_preprocessing import convert_datasets_to_conversation_format as convert
from camel_chat.data_preprocessing.archives import extract_archive, find_archives
from camel_chat.errors import DataError

REPO = Path(__file__).resolve().parents[2]


def zip_of_zeros(path: Path, members: int, size: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(members):
            archive.writestr(f"part{i}.json", b"0" * size)
    return path


def declare_sizes(path: Path, size: int) -> None:
    """Rewrite every central-directory entry to claim `size` uncompressed bytes (a lying bomb)."""
    data = bytearray(path.read_bytes())
    for match in re.finditer(rb"PK\x01\x02", bytes(data)):
        struct.pack_into("<I", data, match.start() + 24, size)
    path.write_bytes(bytes(data))


def refused(path: Path, dest: Path) -> DataError:
    with pytest.raises(DataError) as info:
        extract_archive(path, dest)
    assert path.exists(), "a refused archive is kept"
    assert not [p for p in dest.iterdir() if p.name.endswith(".extracting") or p.is_dir()], (
        "nothing extracted"
    )
    return info.value


def test_a_zip_declaring_40_gib_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    bomb = zip_of_zeros(tmp_path / "math.zip", members=10, size=1000)
    declare_sizes(bomb, 0xFFFF_FFF0)  # 10 x 4 GiB
    error = refused(bomb, tmp_path / "out")
    assert error.rule == "too-large" and "zip bomb" in error.reason


def test_the_expansion_ratio_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archives, "RATIO_FLOOR", 0)
    bomb = zip_of_zeros(tmp_path / "math.zip", members=1, size=1 << 20)  # ~1000x
    error = refused(bomb, tmp_path / "out")
    assert error.rule == "too-large" and "x allowed" in error.reason


def test_member_count_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archives, "MAX_MEMBERS", 5)
    assert refused(zip_of_zeros(tmp_path / "math.zip", 6, 10), tmp_path / "out").rule == "too-many-files"
    tar = tmp_path / "code_chat.tar.gz"
    with tarfile.open(tar, "w:gz") as archive:
        for i in range(6):
            (tmp_path / f"f{i}.json").write_text("{}")
            archive.add(tmp_path / f"f{i}.json", arcname=f"f{i}.json")
    assert refused(tar, tmp_path / "out2").rule == "too-many-files"


def test_tar_total_size_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archives, "MAX_TOTAL_BYTES", 1000)
    (tmp_path / "big.json").write_bytes(b"1" * 2000)
    tar = tmp_path / "code_chat.tar.gz"
    with tarfile.open(tar, "w:gz") as archive:
        archive.add(tmp_path / "big.json", arcname="big.json")
    assert refused(tar, tmp_path / "out").rule == "too-large"


def test_an_archive_larger_than_the_free_disk_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(archives.shutil, "disk_usage", lambda _: usage(100, 90, 10))
    error = refused(zip_of_zeros(tmp_path / "math.zip", 1, 1000), tmp_path / "out")
    assert error.rule == "no-space" and "has 0 MiB free" in error.reason


def test_zip_symlink_members_are_written_as_plain_files(tmp_path: Path) -> None:
    path = tmp_path / "math.zip"
    with zipfile.ZipFile(path, "w") as archive:
        link = zipfile.ZipInfo("escape.json")
        link.external_attr = 0o120777 << 16  # a unix symlink to /etc/passwd
        archive.writestr(link, "/etc/passwd")
        archive.writestr("ok.json", "{}")
    target = extract_archive(path, tmp_path / "out")
    assert not (target / "escape.json").is_symlink()
    assert (target / "escape.json").read_text() == "/etc/passwd"


def test_symlinks_out_of_the_download_folder_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    zip_of_zeros(outside / "precious.zip", 1, 10)
    downloads = tmp_path / "datasets"
    downloads.mkdir()
    (downloads / "math.zip").symlink_to(outside / "precious.zip")
    assert find_archives(downloads) == []  # so download_datasets never extracts (and deletes) it
    folder = downloads / "ai_society"
    folder.mkdir()
    shutil.copy(
        REPO / "samples" / "datasets" / "HTML_cleaned_raw_dataset" / "sg_90k_part1.json", outside / "x.json"
    )
    (folder / "leak.json").symlink_to(outside / "x.json")
    rc = convert.main(["--download_directory", str(downloads), "--datasets", "ai_society"])
    assert rc == 1  # the only file was a link out: nothing to convert, said so
    assert (outside / "precious.zip").exists() and (outside / "x.json").exists()


def _python_sources() -> list[Path]:
    roots = [REPO / "camel_chat", REPO / "bench", REPO / "tools", REPO / "scripts", REPO / "tests"]
    return [p for root in roots if root.is_dir() for p in root.rglob("*.py")]


def test_every_torch_load_refuses_pickled_code() -> None:
    calls = [
        (path, line)
        for path in _python_sources()
        for line in path.read_text(encoding="utf-8").splitlines()
        if "torch.load(" in line and "weights_only=True" not in line and 'torch.load(" in line' not in line
    ]
    assert calls == [], "torch.load without weights_only=True unpickles arbitrary code"


def test_remote_code_never_runs_unasked() -> None:
    hard_coded = [
        (path, line.strip())
        for path in (REPO / "camel_chat").rglob("*.py")
        for line in path.read_text(encoding="utf-8").splitlines()
        if re.search(r"trust_remote_code\s*=\s*True", line) and "if " not in line
    ]
    assert hard_coded == []
