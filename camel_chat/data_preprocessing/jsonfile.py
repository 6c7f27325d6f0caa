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


_escape = json.encoder.encode_basestring_ascii  # the C string escaper json.dumps uses


def write_json_array(path: str | Path, items: Iterable[Any]) -> int:
    """Write a JSON array atomically, one element at a time as `items` yields them; return
    how many. Byte for byte what `write_json(path, list(items))` writes (indent 2, ASCII)."""

    count = 0

    def write(handle: Any) -> None:
        nonlocal count
        for item in items:
            chunks = [",\n  " if count else "[\n  "]
            _indented(item, 1, chunks)
            handle.write("".join(chunks))
            count += 1
        handle.write("\n]" if count else "[]")

    _atomic_write(Path(path), write)
    return count


def _indented(obj: Any, level: int, out: list[str]) -> None:
    """`json.dumps(obj, indent=2)` at nesting `level`, appended to `out` in pieces.

    Python's json module only has a C encoder for compact output; with `indent` it runs a
    pure-Python generator per value, which was the largest cost of writing merge.py's
    output after tokenization. Strings (nearly all of the bytes) go through json's own C
    escaper here; anything but str keys, dicts, lists and strings goes back to `json.dumps`.
    """
    if isinstance(obj, str):
        out.append(_escape(obj))
    elif isinstance(obj, dict) and obj and all(isinstance(key, str) for key in obj):
        inner = "\n" + "  " * (level + 1)
        sep = "{" + inner
        for key, value in obj.items():
            out.append(sep + _escape(key) + ": ")
            _indented(value, level + 1, out)
            sep = "," + inner
        out.append("\n" + "  " * level + "}")
    elif isinstance(obj, list) and obj:
        inner = "\n" + "  " * (level + 1)
        sep = "[" + inner
        for value in obj:
            out.append(sep)
            _indented(value, level + 1, out)
            sep = "," + inner
        out.append("\n" + "  " * level + "]")
    else:
        # JSON text holds no raw newline inside strings, so every newline is layout.
        out.append(json.dumps(obj, indent=2).replace("\n", "\n" + "  " * level))
