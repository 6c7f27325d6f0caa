"""Safe archive extraction: layout, flattening, damaged archives and path traversal."""

from __future__ import annotations

import io
import json
import random
import tarfile
import zipfile
from pathlib import Path

import pytest

from camel_chat.data_preprocessing.archives import (
    extract_archive,
    extraction_name,
    find_archives,
    is_archive,
)
from camel_chat.errors import DataError


def _json(n: int) -> bytes:
    return json.dumps({"message_1": f"problem {n}", "message_2": f"solution {n}"}).encode()


def make_tar(path: Path, members: dict[str, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def names_in(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


# --- recognising archives -----------------------------------------------------------------


def test_is_archive_goes_by_suffix(tmp_path: Path) -> None:
    for name in ("a.tar.gz", "b.TGZ", "c.tar", "d.zip"):
        (tmp_path / name).write_bytes(b"")
        assert is_archive(tmp_path / name), name
    (tmp_path / "e.json").write_text("{}")
    (tmp_path / "f.zip.part").write_bytes(b"")
    (tmp_path / "folder.zip").mkdir()
    assert not is_archive(tmp_path / "e.json")
    assert not is_archive(tmp_path / "f.zip.part")
    assert not is_archive(tmp_path / "folder.zip")
    assert not is_archive(tmp_path / "missing.zip")


def test_extraction_name_is_basename_up_to_first_dot() -> None:
    assert extraction_name("x/ai_society_chat.tar.gz") == "ai_society_chat"
    assert extraction_name("math.zip") == "math"
    assert extraction_name("v1.2.tar") == "v1"


def test_find_archives_is_top_level_sorted_and_skips_hidden(tmp_path: Path) -> None:
    for name in ("math.zip", "code_chat.tar.gz", ".partial.zip", "notes.json"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "inner.zip").write_bytes(b"")
    assert [p.name for p in find_archives(tmp_path)] == ["code_chat.tar.gz", "math.zip"]
    assert find_archives(tmp_path / "nowhere") == []


# --- extracting ------------------------------------------------------------------------------


def test_tar_gz_extracts_into_chosen_directory_and_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # the seed extracted into ./datasets whatever the directory
    dest = tmp_path / "downloads"
    archive = make_tar(tmp_path / "ai_society_chat.tar.gz", {"001_002_003.json": _json(1)})
    target = extract_archive(archive, dest)
    assert target == dest / "ai_society_chat"
    assert names_in(target) == ["001_002_003.json"]
    assert json.loads((target / "001_002_003.json").read_text())["message_1"] == "problem 1"
    assert not archive.exists()
    assert list(cwd.iterdir()) == []
    assert sorted(p.name for p in dest.iterdir()) == ["ai_society_chat"]  # no staging left


def test_remove_false_keeps_the_archive(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "math.zip", {"1.json": _json(1)})
    extract_archive(archive, tmp_path, remove=False)
    assert archive.is_file()
    assert names_in(tmp_path / "math") == ["1.json"]


def test_plain_tar_is_supported(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "physics.tar", {"a.json": _json(1)}, mode="w")
    assert names_in(extract_archive(archive, tmp_path)) == ["a.json"]


def test_single_top_level_folder_is_flattened(tmp_path: Path) -> None:
    archive = make_zip(
        tmp_path / "chemistry.zip",
        {
            "chemistry/1.json": _json(1),
            "chemistry/2.json": _json(2),
            "__MACOSX/chemistry/._1.json": b"junk",
        },
    )
    target = extract_archive(archive, tmp_path / "out")
    assert names_in(target) == ["1.json", "2.json"]


def test_nested_lone_folders_are_flattened_but_real_subfolders_kept(tmp_path: Path) -> None:
    archive = make_tar(
        tmp_path / "code_chat.tar.gz",
        {"outer/inner/a.json": _json(1), "outer/inner/extra/b.json": _json(2)},
    )
    target = extract_archive(archive, tmp_path)
    assert names_in(target) == ["a.json", "extra", "extra/b.json"]


def test_existing_folder_is_replaced(tmp_path: Path) -> None:
    old = tmp_path / "biology"
    old.mkdir()
    (old / "stale.json").write_text("{}")
    archive = make_zip(tmp_path / "biology.zip", {"fresh.json": _json(1)})
    extract_archive(archive, tmp_path)
    assert names_in(old) == ["fresh.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["biology"]


# --- damaged archives --------------------------------------------------------------------------


def _assert_left_untouched(dest: Path, archive: Path) -> None:
    """Nothing half-extracted: only the archive itself remains, still in place."""
    assert sorted(p.name for p in dest.iterdir()) == [archive.name]


@pytest.mark.parametrize("name", ["code_chat.tar.gz", "math.zip", "physics.tar"])
def test_file_that_is_not_an_archive_raises_data_error_naming_it(tmp_path: Path, name: str) -> None:
    archive = tmp_path / name
    archive.write_bytes(b"<html>Access denied</html>\n" * 20)  # e.g. a saved error page
    with pytest.raises(DataError) as info:
        extract_archive(archive, tmp_path)
    assert info.value.path == str(archive)
    assert "not a tar/zip archive" in str(info.value)
    _assert_left_untouched(tmp_path, archive)


def test_truncated_tar_gz_leaves_no_partial_folder(tmp_path: Path) -> None:
    whole = make_tar(tmp_path / "whole.tar.gz", {f"{i}.json": _json(i) * 50 for i in range(20)})
    data = whole.read_bytes()
    whole.unlink()
    archive = tmp_path / "ai_society_chat.tar.gz"
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="not a tar/zip archive"):
        extract_archive(archive, tmp_path)
    _assert_left_untouched(tmp_path, archive)


def test_damaged_zip_member_is_reported(tmp_path: Path) -> None:
    noise = random.Random(0).randbytes(4000)  # incompressible: the member spans the file
    archive = make_zip(tmp_path / "math.zip", {"1.json": noise})
    data = bytearray(archive.read_bytes())
    data[1000:1020] = b"\x00" * 20  # inside the member's data: CRC or inflate fails
    archive.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"math\.zip: not a tar/zip archive, or a damaged one"):
        extract_archive(archive, tmp_path)
    _assert_left_untouched(tmp_path, archive)


def test_empty_archive_is_an_error(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "biology.zip", {})
    with pytest.raises(DataError, match="no files"):
        extract_archive(archive, tmp_path)
    _assert_left_untouched(tmp_path, archive)


# --- unsafe members ------------------------------------------------------------------------------


@pytest.mark.parametrize("member", ["../evil.json", "ok/../../evil.json", "/tmp/evil.json"])
def test_tar_path_traversal_is_rejected(tmp_path: Path, member: str) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    archive = make_tar(dest / "math.tar.gz", {"good.json": _json(1), member: b"pwned"})
    with pytest.raises(DataError, match="unsafe member"):
        extract_archive(archive, dest)
    assert not (tmp_path / "evil.json").exists()
    _assert_left_untouched(dest, archive)


@pytest.mark.parametrize("member", ["../evil.json", "/abs/evil.json", "C:/evil.json"])
def test_zip_path_traversal_is_rejected(tmp_path: Path, member: str) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    archive = make_zip(dest / "math.zip", {"good.json": _json(1), member: b"pwned"})
    with pytest.raises(DataError, match="unsafe member"):
        extract_archive(archive, dest)
    assert not (tmp_path / "evil.json").exists()
    _assert_left_untouched(dest, archive)


def test_tar_links_are_rejected(tmp_path: Path) -> None:
    archive = tmp_path / "code_chat.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        link = tarfile.TarInfo("passwd.json")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(DataError, match="not a file or folder"):
        extract_archive(archive, tmp_path)
    _assert_left_untouched(tmp_path, archive)
