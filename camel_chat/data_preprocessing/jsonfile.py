"""Writing the JSON files of the data pipeline (reading them is `camel_chat.json_input`).

Writes go to a temporary file in the same folder and are renamed into place, so a crash
never leaves half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def _atomic_write(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            write(handle)
        # mkstemp creates 0600; give the file the mode a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any, *, indent: int | None = 2, ensure_ascii: bool = True) -> None:
    """Write `obj` as JSON atomically (the seed's layout: indent 2, ASCII-escaped)."""
    _atomic_write(Path(path), lambda h: json.dump(obj, h, indent=indent, ensure_ascii=ensure_ascii))


def write_jsonl(path: str | Path, records: Iterable[Any]) -> None:
    """Write one JSON object per line, atomically."""

    def write(handle: Any) -> None:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")

    _atomic_write(Path(path), write)


def write_json_array(path: str | Path, items: Iterable[Any]) -> int:
    """Write a JSON array atomically, one element at a time as `items` yields them; return
    how many. Byte for byte what `write_json(path, list(items))` writes (indent 2, ASCII)."""

    count = 0

    def write(handle: Any) -> None:
        nonlocal count
        for item in items:
            handle.write(",\n  " if count else "[\n  ")
            # JSON strings hold no raw newline, so every newline is layout: one level deeper.
            handle.write(json.dumps(item, indent=2).replace("\n", "\n  "))
            count += 1
        handle.write("\n]" if count else "[]")

    _atomic_write(Path(path), write)
    return count
