"""Unpacking the downloaded dataset archives (`.tar.gz`, `.tgz`, `.tar`, `.zip`), safely.

`extract_archive(path, dest_dir)` unpacks `math.zip` into `dest_dir/math` (the basename up
to its first dot, as the seed does) and deletes the archive. Unlike the seed it extracts
into the directory it is given, never a hard-coded `datasets/`. It is also careful:

- members with absolute paths, `..` components, links or device files are rejected (zip
  members are always written as plain files: zipfile never creates links);
- extraction is bounded before anything is written: at most `MAX_MEMBERS` members and
  `MAX_TOTAL_BYTES` in all, no more than the free disk space, and an archive past 1 GiB
  that expands over `MAX_RATIO` times is refused as a zip bomb. The sizes checked are the
  ones the archive declares, and they bound what is written (zipfile stops each member at
  its declared size; a tar member's size is its data);
- everything is unpacked into a hidden staging folder first and renamed into place only
  when complete, so a damaged archive leaves no half-extracted folder behind;
- an archive whose content sits in one top-level folder (`math/*.json`) is flattened, so
  the files always end up directly in the extraction folder, whatever layout upstream used.

`download_datasets` calls it for every archive in the download directory.
"""

from __future__ import annotations

import gzip
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

from camel_chat.errors import DataError

ARCHIVE_SUFFIXES: tuple[str, ...] = (".tar.gz", ".tgz", ".tar", ".zip")

# Archives made on macOS carry these; they are metadata, never data.
_JUNK = frozenset({"__MACOSX", ".DS_Store"})
MAX_MEMBERS = 1_000_000  # the CAMEL archives hold ~25k-50k files each
MAX_TOTAL_BYTES = 32 << 30  # the biggest real dataset extracts to a few GiB
MAX_RATIO = 200  # JSON text deflates ~5-20x; deflate itself tops out near 1032x
RATIO_FLOOR = 1 << 30  # small archives of repetitive text may compress well: judge ratios past 1 GiB

# tarfile's extraction filters arrived in Python 3.10.12 / 3.11.4; `()` matches nothing.
_FILTER_ERROR: Any = getattr(tarfile, "FilterError", ())


def is_archive(path: str | Path) -> bool:
    """True for a regular file whose name ends in one of `ARCHIVE_SUFFIXES`.

    The name decides, not the content: a damaged `x.zip` is still an archive, and
    extracting it reports the damage instead of silently leaving the file there.
    """
    path = Path(path)
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def extraction_name(path: str | Path) -> str:
    """The folder an archive extracts into: its basename up to the first dot."""
    return Path(path).name.split(".")[0]


def find_archives(directory: str | Path) -> list[Path]:
    """The archives directly inside `directory` (not in subfolders), sorted by name.

    Hidden files are skipped: the Hub client keeps its partial downloads under `.cache/`,
    and our own staging folders start with a dot. A symlink that leads out of `directory`
    is not followed (extracting would delete what it points to).
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(
        p
        for p in directory.iterdir()
        if not p.name.startswith(".") and is_archive(p) and is_inside(p, directory)
    )


def is_inside(path: Path, root: Path) -> bool:
    """Whether `path`, its symlinks resolved, lies within `root` (resolved too)."""
    return path.resolve().is_relative_to(root.resolve())


def extract_archive(path: str | Path, dest_dir: str | Path, *, remove: bool = True) -> Path:
    """Unpack `path` into `dest_dir/<extraction_name(path)>` and return that folder.

    An existing folder of that name is replaced. With `remove`, the archive is deleted
    once its content is in place. Raises `DataError` naming the archive when it is not a
    readable tar/zip file, holds an unsafe member, or holds no files.
    """
    path, dest_dir = Path(path), Path(dest_dir)
    name = extraction_name(path)
    if not name:
        raise DataError(path, "cannot name an extraction folder: the name starts with '.'")
    if not path.is_file():
        raise DataError(path, "file not found")
    dest_dir.mkdir(parents=True, exist_ok=True)
    # Staging inside dest_dir keeps the final rename on one filesystem (atomic).
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".extracting", dir=dest_dir))
    try:
        if path.name.lower().endswith(".zip"):
            _unpack_zip(path, staging)
        else:
            _unpack_tar(path, staging)
        target = _install(_content_root(path, staging), dest_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if remove:
        path.unlink()
    return target


def _damaged(path: Path, exc: BaseException) -> DataError:
    return DataError(path, f"not a tar/zip archive, or a damaged one ({type(exc).__name__}: {exc})")


def _check_name(archive: Path, name: str) -> None:
    """Reject member names that would land outside the extraction folder."""
    posix = name.replace("\\", "/")
    parts = PurePosixPath(posix).parts
    drive = len(posix) > 1 and posix[1] == ":"  # "C:/..." from an archive made on Windows
    if posix.startswith("/") or drive or ".." in parts:
        raise DataError(archive, f"unsafe member {name!r}: absolute path or '..' component")


def check_budget(archive: Path, count: int, total: int, dest: Path) -> None:
    """Refuse an archive of `count` members expanding to `total` bytes before writing any."""
    if count > MAX_MEMBERS:
        raise DataError(
            archive, f"{count} members, more than the {MAX_MEMBERS} allowed", rule="too-many-files"
        )
    mib = total >> 20
    if total > MAX_TOTAL_BYTES:
        reason = f"expands to {mib} MiB, more than the {MAX_TOTAL_BYTES >> 30} GiB allowed (a zip bomb?)"
        raise DataError(archive, reason, rule="too-large")
    ratio = total / max(1, archive.stat().st_size)
    if total > RATIO_FLOOR and ratio > MAX_RATIO:
        reason = f"expands {ratio:.0f}x to {mib} MiB, over the {MAX_RATIO}x allowed (a zip bomb?)"
        raise DataError(archive, reason, rule="too-large")
    free = shutil.disk_usage(dest).free
    if total > free:
        raise DataError(archive, f"needs {mib} MiB but {dest} has {free >> 20} MiB free", rule="no-space")


def _unpack_tar(path: Path, staging: Path) -> None:
    try:
        with tarfile.open(path, "r:*") as tar:
            members = tar.getmembers()  # reads the whole index: a truncated file fails here
            for member in members:
                _check_name(path, member.name)
                if not (member.isfile() or member.isdir()):
                    kind = f"unsupported member {member.name!r}: not a file or folder"
                    raise DataError(path, kind)
            check_budget(path, len(members), sum(m.size for m in members if m.isfile()), staging)
            if hasattr(tarfile, "data_filter"):
                # Belt and braces: the stdlib "data" filter re-checks paths and modes.
                tar.extractall(staging, members=members, filter="data")
            else:  # Python < 3.10.12 / 3.11.4: the checks above already ran
                tar.extractall(staging, members=members)
    except _FILTER_ERROR as exc:
        raise DataError(path, f"unsafe member: {exc}") from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise _damaged(path, exc) from None


def _unpack_zip(path: Path, staging: Path) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            for info in infos:
                _check_name(path, info.filename)
            check_budget(path, len(infos), sum(i.file_size for i in infos), staging)
            for info in infos:
                archive.extract(info, staging)  # CRC is checked while reading
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError) as exc:
        # RuntimeError: an encrypted member; ValueError: a corrupt header field
        raise _damaged(path, exc) from None


def _content_root(archive: Path, staging: Path) -> Path:
    """The folder holding the archive's content, descending through lone top-level folders."""
    root = staging
    while True:
        entries = []
        for entry in sorted(root.iterdir()):
            if entry.name in _JUNK:
                _remove(entry)
            else:
                entries.append(entry)
        if len(entries) == 1 and entries[0].is_dir():
            root = entries[0]
            continue
        if not entries:
            raise DataError(archive, "archive contains no files")
        return root


def _install(root: Path, target: Path) -> Path:
    """Move `root` to `target`, replacing what was there only once the new content is ready."""
    if not (target.exists() or target.is_symlink()):
        root.rename(target)
        return target
    trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    old = trash / target.name
    target.rename(old)
    try:
        root.rename(target)
    except OSError:
        old.rename(target)  # put the previous content back rather than leave nothing
        raise
    finally:
        shutil.rmtree(trash, ignore_errors=True)
    return target


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
